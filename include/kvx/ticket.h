/**
 * @file kvx/ticket.h
 * @brief The transfer ticket: where a request's KV cache will come from.
 *
 * In a disaggregated deployment a router sends a request to a prefill node
 * and, with the prefill node's answer, to a decode node. The ticket is what
 * the router forwards between them: the prefill node's control address and
 * node id, the request id the blocks will be pushed under, and the layout
 * compatibility hash (so the decode side can refuse a ticket from a node
 * serving another model shape before connecting).
 *
 * Its text form is one short line that is safe, unchanged, in a URL path or
 * query value, a JSON string and an HTTP header value:
 *
 *     kvx1:<addr>/<node id>/<request id>/<layout hash>
 *
 *     kvx1:10.0.0.7:4000/prefill-0/2a/9f3c0e1d2b4a5968
 *     kvx1:%5B::1%5D:4000/prefill-0/2a/9f3c0e1d2b4a5968
 *     kvx1:unix:%2Frun%2Fkvx.sock/p%20one/0/9f3c0e1d2b4a5968
 *
 *  - "kvx1:" names the version of the form; a parser refuses versions it
 *    does not know with KVX_ERR_PROTO_VERSION.
 *  - addr and node id are percent-escaped: bytes other than A-Z a-z 0-9
 *    '-' '.' '_' '~' ':' are written as "%XX" (upper-case hex), so '/'
 *    (the separator), '[' ']', '%', spaces, quotes and non-ASCII bytes never
 *    appear raw.
 *  - request id and layout hash are lower-case hex without leading zeros
 *    ("0" for zero); a parser also takes upper case and leading zeros, up
 *    to 16 digits.
 *
 * Everything here is plain data and pure functions (kvx_node_ticket() aside,
 * which reads a node): safe from any thread, nothing to free.
 */
#ifndef KVX_TICKET_H
#define KVX_TICKET_H

#include <kvx/common.h>
#include <kvx/node.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of kvx_ticket_t::addr, with its terminating NUL (a unix socket
 *  path of 107 bytes fits with its "unix:" prefix). */
#define KVX_TICKET_ADDR_MAX 128
/** Bytes of kvx_ticket_t::node_id, with its NUL (node ids are 1 .. 256
 *  bytes, as kvx_node_params_t::node_id). */
#define KVX_TICKET_NODE_ID_MAX 257
/** Bytes of the longest text form, with its NUL: every byte of addr and
 *  node id escaped, both numbers 16 digits. Longer text is refused. */
#define KVX_TICKET_TEXT_MAX                                                    \
    (5 + 3 * (KVX_TICKET_ADDR_MAX - 1) + 1 +                                   \
     3 * (KVX_TICKET_NODE_ID_MAX - 1) + 1 + 16 + 1 + 16 + 1)

/** A transfer ticket (see the file comment). Plain data: copy freely. */
typedef struct kvx_ticket {
    /** The prefill node's control address as kvx_node_connect() takes it
        ("10.0.0.7:4000", "[::1]:4000", "unix:/path"): 1 .. 127 bytes,
        NUL-terminated. */
    char addr[KVX_TICKET_ADDR_MAX];
    /** The prefill node's id (kvx_peer_name() once connected): 1 .. 256
        bytes, NUL-terminated. */
    char node_id[KVX_TICKET_NODE_ID_MAX];
    /** The request the blocks are pushed under (kvx_node_recv()). */
    uint64_t request_id;
    /** kvx_layout_compat_hash() of the prefill node's layout. */
    uint64_t layout_hash;
} kvx_ticket_t;

/**
 * Writes the text form of @p ticket.
 *
 * @param ticket  addr and node_id must be non-empty and NUL-terminated
 *                within their arrays; any other byte is allowed (escaped).
 * @param buf     receives the NUL-terminated text; on KVX_ERR_NO_SPACE it
 *                holds "" (when @p len > 0). May be NULL when @p len is 0,
 *                to ask for the length. Owned by the caller.
 * @param len     bytes of @p buf; KVX_TICKET_TEXT_MAX always suffices.
 * @param len_p   receives the text's length without the NUL: on KVX_OK the
 *                bytes written, on KVX_ERR_NO_SPACE the bytes needed (then
 *                @p len must be at least *len_p + 1). May be NULL.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM if @p ticket is NULL, @p buf is
 *         NULL while @p len is not 0, or addr or node_id is empty or not
 *         NUL-terminated (nothing written); KVX_ERR_NO_SPACE if the text
 *         does not fit.
 */
KVX_EXPORT kvx_status_t kvx_ticket_format(const kvx_ticket_t *ticket, char *buf,
                                          size_t len, size_t *len_p);

/**
 * Reads a ticket's text form, strictly: exactly the version prefix and four
 * '/'-separated fields, nothing before or after (no spaces, no newline).
 *
 * @param text    the text; need not be NUL-terminated.
 * @param len     bytes of @p text (its NUL, if any, not counted).
 * @param ticket  receives the ticket; written only on KVX_OK.
 * @return KVX_OK;
 *         KVX_ERR_PROTO_VERSION if the text starts "kvx<N>:" with a
 *         version N other than 1 (a newer router or node wrote it);
 *         KVX_ERR_INVALID_PARAM if @p text or @p ticket is NULL, or the
 *         text is malformed: empty, longer than KVX_TICKET_TEXT_MAX - 1
 *         bytes, a NUL byte anywhere (also escaped as "%00"), no or a bad
 *         version prefix, fewer or more than four fields, an empty addr or
 *         node id, one longer than its array allows once unescaped, a byte
 *         that must be escaped appearing raw, a bad escape, a number that is
 *         empty, not hex or wider than 64 bits.
 */
KVX_EXPORT kvx_status_t kvx_ticket_parse(const char *text, size_t len,
                                         kvx_ticket_t *ticket);

/**
 * Fills a ticket for a request this node will push: its listen address
 * (kvx_node_listen_addr()), node id and layout compatibility hash.
 *
 * The address is the one the listener bound. A node listening on a
 * wildcard address ("0.0.0.0:4000", "[::]:4000") gives a ticket other hosts
 * cannot connect to: set addr to a routable address before formatting.
 *
 * @param node        the node (not changed).
 * @param request_id  the request the engine will push under.
 * @param ticket      receives the ticket; written only on KVX_OK.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM if @p node or @p ticket is NULL;
 *         KVX_ERR_BAD_STATE if the node has no listener (nobody could
 *         connect to it); KVX_ERR_NO_SPACE if the listen address is longer
 *         than KVX_TICKET_ADDR_MAX - 1 bytes.
 */
KVX_EXPORT kvx_status_t kvx_node_ticket(kvx_node_h node, uint64_t request_id,
                                        kvx_ticket_t *ticket);

#ifdef __cplusplus
}
#endif

#endif /* KVX_TICKET_H */
