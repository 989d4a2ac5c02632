/*
 * The transfer ticket's text form (kvx/ticket.h). Pure functions over
 * caller buffers, no allocation: the fuzzer builds this file alone (with
 * log.c). kvx_node_ticket() lives in node.c, beside the node's internals.
 */
#include <kvx/ticket.h>

#include <string.h>

#include "log_int.h"

#define TICKET_PREFIX "kvx"
#define TICKET_VERSION 1u
#define TICKET_FIELDS 4
#define TICKET_HEX_MAX 16 /* digits of a 64-bit number */
#define TICKET_VERSION_DIGITS_MAX 9

/* Bytes that appear raw: RFC 3986 unreserved plus ':' (host:port). */
static int ticket_raw_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~' || c == ':';
}

static int ticket_hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Appends to buf (bounded): counts every byte in *pos even past len. */
static void ticket_put(char *buf, size_t len, size_t *pos, char c)
{
    if (*pos < len) {
        buf[*pos] = c;
    }
    (*pos)++;
}

static void ticket_put_escaped(char *buf, size_t len, size_t *pos,
                               const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (ticket_raw_ok(*p)) {
            ticket_put(buf, len, pos, (char)*p);
        } else {
            ticket_put(buf, len, pos, '%');
            ticket_put(buf, len, pos, hex[*p >> 4]);
            ticket_put(buf, len, pos, hex[*p & 15]);
        }
    }
}

static void ticket_put_hex(char *buf, size_t len, size_t *pos, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char digits[TICKET_HEX_MAX];
    size_t n = 0;

    do {
        digits[n++] = hex[v & 15];
        v >>= 4;
    } while (v != 0);
    while (n > 0) {
        ticket_put(buf, len, pos, digits[--n]);
    }
}

kvx_status_t kvx_ticket_format(const kvx_ticket_t *ticket, char *buf,
                               size_t len, size_t *len_p)
{
    size_t pos = 0, addr_len, id_len;

    if (ticket == NULL || (buf == NULL && len != 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    addr_len = strnlen(ticket->addr, sizeof(ticket->addr));
    id_len = strnlen(ticket->node_id, sizeof(ticket->node_id));
    if (addr_len == 0 || addr_len == sizeof(ticket->addr) || id_len == 0 ||
        id_len == sizeof(ticket->node_id)) {
        kvxi_debug("ticket: format: addr and node_id must be non-empty and "
                   "NUL-terminated");
        return KVX_ERR_INVALID_PARAM;
    }
    for (const char *p = TICKET_PREFIX "1:"; *p != '\0'; p++) {
        ticket_put(buf, len, &pos, *p);
    }
    ticket_put_escaped(buf, len, &pos, ticket->addr);
    ticket_put(buf, len, &pos, '/');
    ticket_put_escaped(buf, len, &pos, ticket->node_id);
    ticket_put(buf, len, &pos, '/');
    ticket_put_hex(buf, len, &pos, ticket->request_id);
    ticket_put(buf, len, &pos, '/');
    ticket_put_hex(buf, len, &pos, ticket->layout_hash);
    if (len_p != NULL) {
        *len_p = pos;
    }
    if (pos >= len) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return KVX_ERR_NO_SPACE;
    }
    buf[pos] = '\0';
    return KVX_OK;
}

/* Unescapes field [s, s + n) into out[max] (NUL-terminated). */
static kvx_status_t ticket_get_string(const char *s, size_t n, char *out,
                                      size_t max, const char *what)
{
    size_t o = 0;

    if (n == 0) {
        kvxi_debug("ticket: parse: empty %s", what);
        return KVX_ERR_INVALID_PARAM;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            int hi = -1, lo = -1;

            if (n - i >= 3) {
                hi = ticket_hex_val((unsigned char)s[i + 1]);
                lo = ticket_hex_val((unsigned char)s[i + 2]);
            }
            if (hi < 0 || lo < 0) {
                kvxi_debug("ticket: parse: bad escape in %s", what);
                return KVX_ERR_INVALID_PARAM;
            }
            c = (unsigned char)(hi << 4 | lo);
            if (c == '\0') {
                kvxi_debug("ticket: parse: %%00 in %s", what);
                return KVX_ERR_INVALID_PARAM;
            }
            i += 2;
        } else if (!ticket_raw_ok(c)) {
            kvxi_debug("ticket: parse: byte 0x%02x unescaped in %s", c, what);
            return KVX_ERR_INVALID_PARAM;
        }
        if (o + 1 >= max) {
            kvxi_debug("ticket: parse: %s longer than %zu bytes", what,
                       max - 1);
            return KVX_ERR_INVALID_PARAM;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return KVX_OK;
}

static kvx_status_t ticket_get_hex(const char *s, size_t n, uint64_t *v_p,
                                   const char *what)
{
    uint64_t v = 0;

    if (n == 0 || n > TICKET_HEX_MAX) {
        kvxi_debug("ticket: parse: %s: want 1 .. 16 hex digits, not %zu", what,
                   n);
        return KVX_ERR_INVALID_PARAM;
    }
    for (size_t i = 0; i < n; i++) {
        int d = ticket_hex_val((unsigned char)s[i]);

        if (d < 0) {
            kvxi_debug("ticket: parse: %s: not a hex digit", what);
            return KVX_ERR_INVALID_PARAM;
        }
        v = v << 4 | (uint64_t)d;
    }
    *v_p = v;
    return KVX_OK;
}

/* "kvx<N>:" -> N, and the bytes it took; -1 if not a version prefix. */
static int ticket_get_version(const char *text, size_t len, uint32_t *ver_p,
                              size_t *used_p)
{
    size_t plen = sizeof(TICKET_PREFIX) - 1, i;
    uint32_t v = 0;

    if (len < plen || memcmp(text, TICKET_PREFIX, plen) != 0) {
        return -1;
    }
    for (i = plen; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (i - plen == TICKET_VERSION_DIGITS_MAX ||
            (i > plen && text[plen] == '0')) {
            return -1; /* too long, or a leading zero */
        }
        v = v * 10 + (uint32_t)(text[i] - '0');
    }
    if (i == plen || i == len || text[i] != ':') {
        return -1;
    }
    *ver_p = v;
    *used_p = i + 1;
    return 0;
}

kvx_status_t kvx_ticket_parse(const char *text, size_t len,
                              kvx_ticket_t *ticket)
{
    const char *field[TICKET_FIELDS], *end;
    size_t flen[TICKET_FIELDS], pos;
    kvx_ticket_t t;
    uint32_t version;
    kvx_status_t st;
    int n = 0;

    if (text == NULL || ticket == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (len == 0 || memchr(text, '\0', len) != NULL) {
        kvxi_debug("ticket: parse: empty, or a NUL byte inside");
        return KVX_ERR_INVALID_PARAM;
    }
    if (ticket_get_version(text, len, &version, &pos) != 0) {
        kvxi_debug("ticket: parse: no \"kvx<version>:\" prefix");
        return KVX_ERR_INVALID_PARAM;
    }
    if (version != TICKET_VERSION) {
        kvxi_debug("ticket: parse: version %u, this library reads %u", version,
                   TICKET_VERSION);
        return KVX_ERR_PROTO_VERSION;
    }
    if (len > KVX_TICKET_TEXT_MAX - 1) {
        kvxi_debug("ticket: parse: %zu bytes, at most %d", len,
                   KVX_TICKET_TEXT_MAX - 1);
        return KVX_ERR_INVALID_PARAM;
    }
    /* split on '/': exactly four fields */
    end = text + len;
    for (const char *p = text + pos;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *fend = slash != NULL ? slash : end;

        if (n == TICKET_FIELDS) {
            kvxi_debug("ticket: parse: more than %d fields", TICKET_FIELDS);
            return KVX_ERR_INVALID_PARAM;
        }
        field[n] = p;
        flen[n] = (size_t)(fend - p);
        n++;
        if (slash == NULL) {
            break;
        }
        p = slash + 1;
    }
    if (n != TICKET_FIELDS) {
        kvxi_debug("ticket: parse: %d fields, want %d", n, TICKET_FIELDS);
        return KVX_ERR_INVALID_PARAM;
    }
    memset(&t, 0, sizeof(t));
    st = ticket_get_string(field[0], flen[0], t.addr, sizeof(t.addr), "addr");
    if (st == KVX_OK) {
        st = ticket_get_string(field[1], flen[1], t.node_id, sizeof(t.node_id),
                               "node id");
    }
    if (st == KVX_OK) {
        st = ticket_get_hex(field[2], flen[2], &t.request_id, "request id");
    }
    if (st == KVX_OK) {
        st = ticket_get_hex(field[3], flen[3], &t.layout_hash, "layout hash");
    }
    if (st != KVX_OK) {
        return st;
    }
    *ticket = t;
    return KVX_OK;
}
