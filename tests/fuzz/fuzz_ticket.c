/*
 * libFuzzer target for the transfer ticket's text form (libkvx/ticket.c):
 * the text a router forwards between nodes, so anything may arrive.
 *
 *  1. The input as ticket text: the parser returns KVX_OK, or
 *     KVX_ERR_INVALID_PARAM / KVX_ERR_PROTO_VERSION without writing the
 *     ticket. A ticket that parses formats to canonical text no longer than
 *     the input, which parses to the same ticket and formats to the same
 *     bytes again.
 *  2. The input as a ticket's fields (addr, node id, numbers): formatting
 *     succeeds exactly when both strings are non-empty, and the text parses
 *     back to the same ticket.
 * A broken property traps.
 */
#include <stdint.h>
#include <string.h>

#include <kvx/ticket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static int same(const kvx_ticket_t *a, const kvx_ticket_t *b)
{
    return strcmp(a->addr, b->addr) == 0 &&
           strcmp(a->node_id, b->node_id) == 0 &&
           a->request_id == b->request_id && a->layout_hash == b->layout_hash;
}

/* @t formats, and the text parses back to @t; returns the text's length. */
static size_t check_round_trip(const kvx_ticket_t *t, char *buf)
{
    kvx_ticket_t back;
    size_t len = 0, need = 0;

    check(kvx_ticket_format(t, NULL, 0, &need) == KVX_ERR_NO_SPACE);
    check(kvx_ticket_format(t, buf, KVX_TICKET_TEXT_MAX, &len) == KVX_OK);
    check(len == need && len == strlen(buf) && len < KVX_TICKET_TEXT_MAX);
    check(kvx_ticket_parse(buf, len, &back) == KVX_OK);
    check(same(t, &back));
    return len;
}

static void fuzz_text(const uint8_t *data, size_t size)
{
    static char buf[KVX_TICKET_TEXT_MAX], again[KVX_TICKET_TEXT_MAX];
    kvx_ticket_t t, orig;
    kvx_status_t st;
    size_t len;

    memset(&t, 0xa5, sizeof(t));
    orig = t;
    st = kvx_ticket_parse((const char *)data, size, &t);
    if (st != KVX_OK) {
        check(st == KVX_ERR_INVALID_PARAM || st == KVX_ERR_PROTO_VERSION);
        check(memcmp(&t, &orig, sizeof(t)) == 0);
        return;
    }
    len = check_round_trip(&t, buf);
    check(len <= size);
    check(check_round_trip(&t, again) == len);
    check(memcmp(buf, again, len) == 0);
}

static void fuzz_fields(const uint8_t *data, size_t size)
{
    static char buf[KVX_TICKET_TEXT_MAX];
    kvx_ticket_t t;
    size_t a = 0, n = 0, i = 0;
    kvx_status_t st;

    /* addr up to the first 0 byte (or array end), then the node id, then
     * 16 bytes of numbers */
    memset(&t, 0, sizeof(t));
    while (i < size && data[i] != 0 && a < sizeof(t.addr) - 1) {
        t.addr[a++] = (char)data[i++];
    }
    i++;
    while (i < size && data[i] != 0 && n < sizeof(t.node_id) - 1) {
        t.node_id[n++] = (char)data[i++];
    }
    i++;
    for (int k = 0; k < 8 && i < size; k++, i++) {
        t.request_id = t.request_id << 8 | data[i];
    }
    for (int k = 0; k < 8 && i < size; k++, i++) {
        t.layout_hash = t.layout_hash << 8 | data[i];
    }
    st = kvx_ticket_format(&t, buf, sizeof(buf), NULL);
    check((st == KVX_OK) == (a > 0 && n > 0));
    if (st == KVX_OK) {
        check_round_trip(&t, buf);
    } else {
        check(st == KVX_ERR_INVALID_PARAM);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_text(data, size);
    fuzz_fields(data, size);
    return 0;
}
