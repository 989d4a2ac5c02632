#!/usr/bin/python3
"""Cross-checks libkvx block keys against an independent implementation.

Runs kvx_keygen (libkvx's public key API), then recomputes every digest it
printed the way vLLM's prefix cache does -- a Python tuple serialised with
cbor2.dumps(canonical=True), hashed with hashlib.sha256 (vLLM "sha256_cbor")
or xxhash.xxh3_128_digest (vLLM "xxhash_cbor"), chained from NONE_HASH --
and compares full digests. Nothing here is derived from the C code.

usage: check_keys.py KVX_KEYGEN [keygen arguments...]
exit:  0 all digests match, 1 mismatch or error, 77 no cbor2 (skip).
"""

import hashlib
import subprocess
import sys

SKIP = 77

try:
    import cbor2
except ImportError:
    print("check_keys: python module cbor2 missing (Debian: python3-cbor2); "
          "skipping", file=sys.stderr)
    sys.exit(SKIP)

try:
    import xxhash
    if not hasattr(xxhash, "xxh3_128_digest"):
        xxhash = None
except ImportError:
    xxhash = None


# --- The vLLM recipe (vllm/utils/hashing.py, vllm/v1/core/kv_cache_utils.py)

def sha256_cbor(value):
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).digest()


def xxhash_cbor(value):
    return xxhash.xxh3_128_digest(cbor2.dumps(value, canonical=True))


HASH_FNS = {"sha256-cbor": sha256_cbor, "xxh3-128": xxhash_cbor}


def init_none_hash(hash_fn, hash_seed):
    """NONE_HASH for a PYTHONHASHSEED value (a str), as vLLM computes it."""
    return hash_fn(hash_seed)


def hash_block_tokens(hash_fn, parent_block_hash, curr_block_token_ids,
                      extra_keys=None):
    return hash_fn((parent_block_hash, tuple(curr_block_token_ids),
                    extra_keys))


# --- Parsing kvx_keygen's lines

def parse_tokens(field):
    return [int(t) for t in field.split(",")]


def parse_extra(field):
    """'-' is None; else a tuple of int / str / bytes, as vLLM passes them."""
    if field == "-":
        return None
    keys = []
    for item in field.split(","):
        kind, _, value = item.partition(":")
        if kind == "i":
            keys.append(int(value))
        elif kind == "t":
            keys.append(bytes.fromhex(value).decode("utf-8"))
        elif kind == "b":
            keys.append(bytes.fromhex(value))
        else:
            raise ValueError("bad extra key %r" % item)
    return tuple(keys)


class Checker:
    def __init__(self):
        self.compared = {"sha256-cbor": 0, "xxh3-128": 0}
        self.skipped = 0
        self.failures = 0
        self.cases = {}  # case id -> [algo, parent digest]

    def expect(self, where, algo, got_hex, want):
        if got_hex != want.hex():
            self.failures += 1
            if self.failures <= 10:
                print("MISMATCH %s (%s): libkvx %s, python %s"
                      % (where, algo, got_hex, want.hex()), file=sys.stderr)
        else:
            self.compared[algo] += 1

    def root(self, f):
        case, algo, kind, seed_hex, digest_hex = f[1], f[2], f[3], f[4], f[5]
        if algo not in HASH_FNS:
            raise ValueError("unknown algorithm %r" % algo)
        digest = bytes.fromhex(digest_hex)
        self.cases[case] = [algo, digest]
        if algo == "xxh3-128" and xxhash is None:
            self.skipped += 1
            return
        if kind == "seed":
            seed = "" if seed_hex == "-" else \
                bytes.fromhex(seed_hex).decode("utf-8")
            want = init_none_hash(HASH_FNS[algo], seed)
            self.expect("root of case %s" % case, algo, digest_hex, want)
        elif kind == "random":
            # vLLM: os.urandom(32) whatever the hash; only the size checks.
            if len(digest) != 32:
                self.failures += 1
                print("random root of case %s has %d bytes"
                      % (case, len(digest)), file=sys.stderr)
        elif kind != "parent":
            raise ValueError("unknown root kind %r" % kind)

    def block(self, f):
        case, index, tokens, extra, digest_hex = f[1], f[2], f[3], f[4], f[5]
        algo, parent = self.cases[case]
        if algo == "xxh3-128" and xxhash is None:
            self.skipped += 1
            return
        want = hash_block_tokens(HASH_FNS[algo], parent, parse_tokens(tokens),
                                 parse_extra(extra))
        self.expect("block %s of case %s" % (index, case), algo, digest_hex,
                    want)
        self.cases[case][1] = want

    def blocks(self, f):
        case, block_tokens, tokens = f[1], int(f[2]), parse_tokens(f[3])
        extra, keys_field, digest_hex = parse_extra(f[4]), f[5], f[6]
        algo, parent = self.cases[case]
        if algo == "xxh3-128" and xxhash is None:
            self.skipped += 1
            return
        keys = keys_field.split(",") if keys_field else []
        n_full = len(tokens) // block_tokens
        if len(keys) != n_full:
            self.failures += 1
            print("case %s: %d keys for %d full blocks"
                  % (case, len(keys), n_full), file=sys.stderr)
            return
        for i in range(n_full):
            block = tokens[i * block_tokens:(i + 1) * block_tokens]
            parent = hash_block_tokens(HASH_FNS[algo], parent, block, extra)
            # The 128-bit key is the digest's first 16 bytes.
            self.expect("key %d of case %s" % (i, case), algo, keys[i],
                        parent[:16])
        self.expect("chain end of case %s" % case, algo, digest_hex, parent)
        self.cases[case][1] = parent


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 1
    if xxhash is None:
        print("check_keys: python module xxhash missing (Debian: "
              "python3-xxhash); checking sha256-cbor keys only",
              file=sys.stderr)
    proc = subprocess.run(argv[1:], stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        print("check_keys: %s exited with %d" % (argv[1], proc.returncode),
              file=sys.stderr)
        return 1
    checker = Checker()
    handlers = {"root": checker.root, "block": checker.block,
                "blocks": checker.blocks}
    for n, line in enumerate(proc.stdout.decode("ascii").splitlines(), 1):
        fields = line.split(" ")
        try:
            handlers[fields[0]](fields)
        except (KeyError, IndexError, ValueError) as exc:
            print("check_keys: line %d unreadable (%s): %.80s"
                  % (n, exc, line), file=sys.stderr)
            return 1
    total = sum(checker.compared.values())
    print("check_keys: %d digests match (sha256-cbor %d, xxh3-128 %d), "
          "%d mismatches, %d xxh3 lines skipped"
          % (total, checker.compared["sha256-cbor"],
             checker.compared["xxh3-128"], checker.failures,
             checker.skipped))
    if checker.failures:
        return 1
    if total == 0:
        print("check_keys: nothing compared", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
