/*
 * Unit tests for libkvx/ticket.c and kvx_node_ticket() (node.c): the text
 * form's round trips and exact bytes, every malformed shape the parser must
 * refuse, a seeded random-garbage loop, and tickets of real nodes (skipped
 * when UCX cannot start).
 */
#include "node_ut.h"

#include <unistd.h>

static kvx_ticket_t mk(const char *addr, const char *id, uint64_t req,
                       uint64_t hash)
{
    kvx_ticket_t t;

    memset(&t, 0, sizeof(t));
    snprintf(t.addr, sizeof(t.addr), "%s", addr);
    snprintf(t.node_id, sizeof(t.node_id), "%s", id);
    t.request_id = req;
    t.layout_hash = hash;
    return t;
}

static int same(const kvx_ticket_t *a, const kvx_ticket_t *b)
{
    return strcmp(a->addr, b->addr) == 0 &&
           strcmp(a->node_id, b->node_id) == 0 &&
           a->request_id == b->request_id && a->layout_hash == b->layout_hash;
}

/* Only bytes that are safe raw in a URL, a JSON string and a header. */
static int text_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-._~:/%",
                   *s) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* format -> parse gives @p t back; the text is safe and as long as said. */
static void round_trip(const kvx_ticket_t *t, const char *want)
{
    char buf[KVX_TICKET_TEXT_MAX];
    kvx_ticket_t back;
    size_t len = 0;

    CU_ASSERT_EQUAL_FATAL(kvx_ticket_format(t, buf, sizeof(buf), &len), KVX_OK);
    CU_ASSERT_EQUAL(len, strlen(buf));
    CU_ASSERT(text_safe(buf));
    if (want != NULL) {
        CU_ASSERT_STRING_EQUAL(buf, want);
    }
    memset(&back, 0x5a, sizeof(back));
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(buf, len, &back), KVX_OK);
    CU_ASSERT(same(t, &back));
}

static void test_ticket_round_trip(void)
{
    kvx_ticket_t t;
    char utf8_id[] = "d\xc3\xa9"
                     "code-\xe2\x82\xac";

    t = mk("10.0.0.7:4000", "prefill-0", 42, 0x9f3c0e1d2b4a5968ull);
    round_trip(&t, "kvx1:10.0.0.7:4000/prefill-0/2a/9f3c0e1d2b4a5968");
    t = mk("[::1]:4000", "prefill-0", 42, 0x9f3c0e1d2b4a5968ull);
    round_trip(&t, "kvx1:%5B::1%5D:4000/prefill-0/2a/9f3c0e1d2b4a5968");
    t = mk("[fe80::1%eth0]:65535", "p", 0, 0);
    round_trip(&t, "kvx1:%5Bfe80::1%25eth0%5D:65535/p/0/0");
    t = mk("[2001:db8::dead:beef]:1", "n", UINT64_MAX, UINT64_MAX);
    round_trip(&t, "kvx1:%5B2001:db8::dead:beef%5D:1/n/ffffffffffffffff/"
                   "ffffffffffffffff");
    t = mk("unix:/run/kvx.sock", "p one", 0, 0x10);
    round_trip(&t, "kvx1:unix:%2Frun%2Fkvx.sock/p%20one/0/10");
    t = mk("unix:/tmp/a dir/with%/s.sock", "a/b\"c'd\\e?f#g&h=i+j", 1, 2);
    round_trip(&t, NULL);
    t = mk("127.0.0.1:1", utf8_id, 0x0123456789abcdefull, 1);
    round_trip(&t, "kvx1:127.0.0.1:1/d%C3%A9code-%E2%82%AC/123456789abcdef/1");
    t = mk("h:1", "\x01\x7f\xff", 7, 8);
    round_trip(&t, "kvx1:h:1/%01%7F%FF/7/8");
}

static void test_ticket_parse_lenient_forms(void)
{
    /* upper-case hex, leading zeros, lower-case escapes, escaped safe
     * bytes: all read as the canonical ticket */
    static const char *forms[] = {
        "kvx1:10.0.0.7:4000/prefill-0/2A/9F3C0E1D2B4A5968",
        "kvx1:10.0.0.7:4000/prefill-0/000000000000002a/9f3c0e1d2b4a5968",
        "kvx1:10.0.0.7:4000/prefill%2d0/2a/9f3c0e1d2b4a5968",
        "kvx1:%31%30.0.0.7:4000/prefill-0/2a/9f3c0e1d2b4a5968",
    };
    kvx_ticket_t want =
        mk("10.0.0.7:4000", "prefill-0", 42, 0x9f3c0e1d2b4a5968ull);
    kvx_ticket_t t;

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(forms[i], strlen(forms[i]), &t),
                              KVX_OK);
        CU_ASSERT(same(&t, &want));
    }
    t = mk("[::1]:4000", "x", 1, 2);
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx1:%5b::1%5d:4000/x/1/2", 25, &t),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(t.addr, "[::1]:4000");
    /* the length bounds the text: what follows is not read */
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx1:h:1/n/1/2 trailing", 14, &t),
                    KVX_OK);
    CU_ASSERT_EQUAL(t.layout_hash, 2);
}

static void test_ticket_parse_malformed(void)
{
    static const struct {
        const char *text;
        kvx_status_t want;
    } cases[] = {
        /* prefix and version */
        {"h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"KVX1:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvxa:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx01:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx-1:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1234567890:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {" kvx1:h:1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx", KVX_ERR_INVALID_PARAM},
        {"kvx1", KVX_ERR_INVALID_PARAM},
        {"kvx2:h:1/n/1/2", KVX_ERR_PROTO_VERSION},
        {"kvx0:h:1/n/1/2", KVX_ERR_PROTO_VERSION},
        {"kvx10:anything at all", KVX_ERR_PROTO_VERSION},
        {"kvx999999999:", KVX_ERR_PROTO_VERSION},
        /* truncated */
        {"kvx1:", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2%", KVX_ERR_INVALID_PARAM},
        /* empty fields */
        {"kvx1:/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1//1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n//2", KVX_ERR_INVALID_PARAM},
        {"kvx1:///", KVX_ERR_INVALID_PARAM},
        /* extra fields, trailing garbage */
        {"kvx1:h:1/n/1/2/", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2/3", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2 ", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2\n", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2\r\n", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2x", KVX_ERR_INVALID_PARAM},
        /* bad hex */
        {"kvx1:h:1/n/g/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/0x1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/-1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/+1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/ 1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/2z", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/%32", KVX_ERR_INVALID_PARAM},
        /* 64-bit overflow: 17 digits, even with leading zeros */
        {"kvx1:h:1/n/10000000000000000/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/1/10000000000000000", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/0ffffffffffffffff/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n/ffffffffffffffffffffffff/2", KVX_ERR_INVALID_PARAM},
        /* raw bytes that must be escaped, bad escapes */
        {"kvx1:[::1]:4000/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h 1/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n\"/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n\xc3\xa9/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/n?x/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h%/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h%2/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h%2g/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h%g2/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h%%41/n/1/2", KVX_ERR_INVALID_PARAM},
        /* NUL escaped */
        {"kvx1:h%00/n/1/2", KVX_ERR_INVALID_PARAM},
        {"kvx1:h:1/%00/1/2", KVX_ERR_INVALID_PARAM},
    };
    kvx_ticket_t t, orig = mk("keep", "me", 5, 6);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kvx_status_t st;

        t = orig;
        st = kvx_ticket_parse(cases[i].text, strlen(cases[i].text), &t);
        if (st != cases[i].want) {
            fprintf(stderr, "\n  '%s': %s, want %s\n", cases[i].text,
                    kvx_status_string(st), kvx_status_string(cases[i].want));
        }
        CU_ASSERT_EQUAL(st, cases[i].want);
        CU_ASSERT(same(&t, &orig)); /* written only on success */
    }
    /* empty, NULLs */
    CU_ASSERT_EQUAL(kvx_ticket_parse("", 0, &t), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_parse(NULL, 0, &t), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx1:h:1/n/1/2", 14, NULL),
                    KVX_ERR_INVALID_PARAM);
    /* a NUL byte inside, and the NUL counted in the length */
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx1:h:1\0/n/1/2", 16, &t),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx1:h:1/n/1/2", 15, &t),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_parse("kvx2:h:1/n/1/2", 15, &t),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(same(&t, &orig));
}

static void test_ticket_sizes(void)
{
    char text[KVX_TICKET_TEXT_MAX + 8], *big;
    kvx_ticket_t t, back;
    size_t len;

    /* the longest ticket: every byte escaped, 16-digit numbers */
    memset(&t, 0, sizeof(t));
    memset(t.addr, '/', sizeof(t.addr) - 1);
    memset(t.node_id, ' ', sizeof(t.node_id) - 1);
    t.request_id = UINT64_MAX;
    t.layout_hash = UINT64_MAX;
    CU_ASSERT_EQUAL_FATAL(
        kvx_ticket_format(&t, text, KVX_TICKET_TEXT_MAX, &len), KVX_OK);
    CU_ASSERT_EQUAL(len, KVX_TICKET_TEXT_MAX - 1);
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(text, len, &back), KVX_OK);
    CU_ASSERT(same(&t, &back));
    /* one byte short of room: nothing, and the length needed */
    len = 0;
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, text, KVX_TICKET_TEXT_MAX - 1, &len),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(len, KVX_TICKET_TEXT_MAX - 1);
    CU_ASSERT_STRING_EQUAL(text, "");
    /* every buffer size of a short ticket */
    t = mk("h:1", "n", 1, 2); /* "kvx1:h:1/n/1/2": 14 bytes */
    for (size_t l = 0; l <= 14; l++) {
        memset(text, 'x', sizeof(text));
        CU_ASSERT_EQUAL(kvx_ticket_format(&t, l ? text : NULL, l, &len),
                        KVX_ERR_NO_SPACE);
        CU_ASSERT_EQUAL(len, 14);
        if (l > 0) {
            CU_ASSERT_EQUAL(text[0], '\0');
            CU_ASSERT_EQUAL(text[l], 'x'); /* nothing past the buffer */
        }
    }
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, text, 15, NULL), KVX_OK);
    CU_ASSERT_STRING_EQUAL(text, "kvx1:h:1/n/1/2");
    /* fields one byte longer than their arrays allow, once unescaped */
    big = malloc(2 * KVX_TICKET_TEXT_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    len = (size_t)snprintf(big, 2 * KVX_TICKET_TEXT_MAX, "kvx1:");
    for (int i = 0; i < KVX_TICKET_ADDR_MAX; i++) {
        big[len++] = 'a';
    }
    len += (size_t)snprintf(big + len, 16, "/n/1/2");
    CU_ASSERT_EQUAL(kvx_ticket_parse(big, len, &back), KVX_ERR_INVALID_PARAM);
    len = (size_t)snprintf(big, 2 * KVX_TICKET_TEXT_MAX, "kvx1:h:1/");
    for (int i = 0; i < KVX_TICKET_NODE_ID_MAX; i++) {
        big[len++] = 'n';
    }
    len += (size_t)snprintf(big + len, 16, "/1/2");
    CU_ASSERT_EQUAL(kvx_ticket_parse(big, len, &back), KVX_ERR_INVALID_PARAM);
    /* ... and exactly as long as they may be */
    len = (size_t)snprintf(big, 2 * KVX_TICKET_TEXT_MAX, "kvx1:h:1/");
    for (int i = 0; i < KVX_TICKET_NODE_ID_MAX - 1; i++) {
        big[len++] = 'n';
    }
    len += (size_t)snprintf(big + len, 16, "/1/2");
    CU_ASSERT_EQUAL(kvx_ticket_parse(big, len, &back), KVX_OK);
    CU_ASSERT_EQUAL(strlen(back.node_id), KVX_TICKET_NODE_ID_MAX - 1);
    /* oversize text, valid shape aside */
    memset(big, 'a', 2 * KVX_TICKET_TEXT_MAX);
    memcpy(big, "kvx1:", 5);
    CU_ASSERT_EQUAL(kvx_ticket_parse(big, KVX_TICKET_TEXT_MAX, &back),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_parse(big, 2 * KVX_TICKET_TEXT_MAX, &back),
                    KVX_ERR_INVALID_PARAM);
    free(big);
}

static void test_ticket_format_invalid(void)
{
    kvx_ticket_t t = mk("h:1", "n", 1, 2);
    char buf[64] = "untouched";
    size_t len = 99;

    CU_ASSERT_EQUAL(kvx_ticket_format(NULL, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, NULL, 8, &len),
                    KVX_ERR_INVALID_PARAM);
    t.addr[0] = '\0';
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    t = mk("h:1", "", 1, 2);
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    t = mk("h:1", "n", 1, 2);
    memset(t.addr, 'a', sizeof(t.addr)); /* no NUL */
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    t = mk("h:1", "n", 1, 2);
    memset(t.node_id, 'a', sizeof(t.node_id));
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_STRING_EQUAL(buf, "untouched");
    CU_ASSERT_EQUAL(len, 99);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Whatever parses re-formats to text that parses to the same ticket, and
 * re-formatting that is stable. */
static void check_parsed(const char *text, size_t len)
{
    char buf[KVX_TICKET_TEXT_MAX], again[KVX_TICKET_TEXT_MAX];
    kvx_ticket_t t, back;
    kvx_status_t st;
    size_t n, n2;

    st = kvx_ticket_parse(text, len, &t);
    CU_ASSERT(st == KVX_OK || st == KVX_ERR_INVALID_PARAM ||
              st == KVX_ERR_PROTO_VERSION);
    if (st != KVX_OK) {
        return;
    }
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_format(&t, buf, sizeof(buf), &n), KVX_OK);
    CU_ASSERT(n <= len); /* canonical is never longer */
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(buf, n, &back), KVX_OK);
    CU_ASSERT(same(&t, &back));
    CU_ASSERT_EQUAL(kvx_ticket_format(&back, again, sizeof(again), &n2),
                    KVX_OK);
    CU_ASSERT(n2 == n && memcmp(buf, again, n) == 0);
}

static void test_ticket_random_garbage(void)
{
    static const char alphabet[] = "kvx1:/%0123456789abcdefABCDEF[]:. -_~\"";
    static const char *seeds[] = {
        "kvx1:10.0.0.7:4000/prefill-0/2a/9f3c0e1d2b4a5968",
        "kvx1:%5B::1%5D:4000/prefill-0/2a/9f3c0e1d2b4a5968",
        "kvx1:unix:%2Frun%2Fkvx.sock/p%20one/0/10",
    };
    uint64_t rng = 0x2545f4914f6cdd1dull; /* fixed seed: reproducible */
    char *text = malloc(KVX_TICKET_TEXT_MAX + 64);
    unsigned parsed = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    for (unsigned iter = 0; iter < 300000; iter++) {
        uint64_t r = rng_next(&rng);
        size_t len;

        if (r % 3 == 0) { /* random bytes, any value */
            len = rng_next(&rng) % 80;
            for (size_t i = 0; i < len; i++) {
                text[i] = (char)(rng_next(&rng) & 0xff);
            }
        } else if (r % 3 == 1) { /* ticket-like alphabet */
            len = 5 + rng_next(&rng) % 60;
            memcpy(text, "kvx1:", 5);
            for (size_t i = 5; i < len; i++) {
                text[i] = alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
            }
        } else { /* a valid ticket with a few bytes changed */
            const char *s = seeds[rng_next(&rng) % 3];

            len = strlen(s);
            memcpy(text, s, len);
            for (int k = 1 + (int)(rng_next(&rng) % 3); k > 0; k--) {
                size_t at = rng_next(&rng) % len;

                switch (rng_next(&rng) % 4) {
                case 0: text[at] = (char)(rng_next(&rng) & 0xff); break;
                case 1:
                    text[at] =
                        alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
                    break;
                case 2: len = at; break; /* truncate */
                default:
                    if (len < KVX_TICKET_TEXT_MAX) { /* duplicate a byte */
                        memmove(text + at + 1, text + at, len - at);
                        len++;
                    }
                }
                if (len == 0) {
                    break;
                }
            }
        }
        /* parse from an exact-size copy so ASan sees any over-read */
        {
            char *exact = malloc(len ? len : 1);

            CU_ASSERT_PTR_NOT_NULL_FATAL(exact);
            memcpy(exact, text, len);
            check_parsed(exact, len);
            parsed +=
                kvx_ticket_parse(exact, len, &(kvx_ticket_t){0}) == KVX_OK;
            free(exact);
        }
    }
    free(text);
    /* the mutations leave some tickets valid: the OK path ran too */
    CU_ASSERT(parsed > 100);
}

/* ---- kvx_node_ticket ---- */

static int node_or_skip(kvx_status_t st)
{
    if (st == KVX_ERR_NOT_SUPPORTED) {
        fprintf(stderr, "\n  UCX cannot start: skipping the node part\n");
        return 0;
    }
    CU_ASSERT_EQUAL_FATAL(st, KVX_OK);
    return 1;
}

static void test_node_ticket(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP};
    kvx_ticket_t t, back, keep = mk("keep", "me", 5, 6);
    char text[KVX_TICKET_TEXT_MAX];
    kvx_node_h node, quiet;
    size_t len;

    if (!node_or_skip(nut_node("prefill/0 \"x\"", &o, 1, &node))) {
        return;
    }
    CU_ASSERT_EQUAL_FATAL(kvx_node_ticket(node, 0xabcdefull, &t), KVX_OK);
    CU_ASSERT_STRING_EQUAL(t.addr, kvx_node_listen_addr(node));
    CU_ASSERT_STRING_EQUAL(t.node_id, "prefill/0 \"x\"");
    CU_ASSERT_EQUAL(t.request_id, 0xabcdefull);
    CU_ASSERT_EQUAL(t.layout_hash,
                    kvx_layout_compat_hash(kvx_node_layout(node)));
    CU_ASSERT_NOT_EQUAL(t.layout_hash, 0);
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_format(&t, text, sizeof(text), &len),
                          KVX_OK);
    CU_ASSERT_EQUAL(strncmp(text, "kvx1:127.0.0.1:", 15), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "/prefill%2F0%20%22x%22/abcdef/"));
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(text, len, &back), KVX_OK);
    CU_ASSERT(same(&t, &back));

    CU_ASSERT_EQUAL(kvx_node_ticket(NULL, 1, &t), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_ticket(node, 1, NULL), KVX_ERR_INVALID_PARAM);
    kvx_node_destroy(node);

    /* no listener: nobody could follow the ticket */
    CU_ASSERT_EQUAL_FATAL(nut_node("quiet", &o, 0, &quiet), KVX_OK);
    t = keep;
    CU_ASSERT_EQUAL(kvx_node_ticket(quiet, 1, &t), KVX_ERR_BAD_STATE);
    CU_ASSERT(same(&t, &keep));
    kvx_node_destroy(quiet);
}

static void test_node_ticket_unix(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    char listen[96], text[KVX_TICKET_TEXT_MAX];
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_LISTEN | KVX_NODE_PARAM_FIELD_UCX_TLS,
        .node_id = "unix-node",
        .layout = &lp,
        .listen = listen,
        .ucx_tls = NUT_TLS_TCP,
    };
    kvx_ticket_t t, back;
    kvx_node_h node;
    size_t len;

    snprintf(listen, sizeof(listen), "unix:/tmp/kvx-ticket-%ld.sock",
             (long)getpid());
    if (!node_or_skip(kvx_node_create(&np, &node))) {
        return;
    }
    CU_ASSERT_EQUAL_FATAL(kvx_node_ticket(node, 7, &t), KVX_OK);
    CU_ASSERT_STRING_EQUAL(t.addr, listen);
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_format(&t, text, sizeof(text), &len),
                          KVX_OK);
    CU_ASSERT_EQUAL(strncmp(text, "kvx1:unix:%2Ftmp%2Fkvx-ticket-", 30), 0);
    {
        int slashes = 0;

        for (const char *p = text; *p != '\0'; p++) {
            slashes += *p == '/';
        }
        CU_ASSERT_EQUAL(slashes, 3); /* the path's are escaped */
    }
    CU_ASSERT_EQUAL_FATAL(kvx_ticket_parse(text, len, &back), KVX_OK);
    CU_ASSERT(same(&t, &back));
    kvx_node_destroy(node);
}

static const ut_test_t ticket_tests[] = {
    UT_TEST(test_ticket_round_trip),
    UT_TEST(test_ticket_parse_lenient_forms),
    UT_TEST(test_ticket_parse_malformed),
    UT_TEST(test_ticket_sizes),
    UT_TEST(test_ticket_format_invalid),
    UT_TEST(test_ticket_random_garbage),
    UT_END,
};

static const ut_test_t node_ticket_tests[] = {
    UT_TEST(test_node_ticket),
    UT_TEST(test_node_ticket_unix),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"ticket", ticket_tests},
        {"node_ticket", node_ticket_tests},
        {NULL, NULL},
    };

    setenv("UCX_NET_DEVICES", "lo", 0);
    kvx_log_set_cb(nut_log, NULL,
                   getenv("KVX_TEST_VERBOSE") ? KVX_LOG_DEBUG : KVX_LOG_ERROR);
    return ut_main(suites);
}
