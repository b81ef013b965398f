#!/usr/bin/python3
"""
gen_refused_vectors.py - write tests/vectors/container-v1-refused/: container
v1 objects that a reader must refuse (and a few on the edge that it must
open), each sealed to the public test key of tests/vectors/container-v1/.

Run once, when the directory was made; its output is committed and never
regenerated (sealing is randomised: a rerun gives different, equally valid
files). Needs python3-nacl and python3-zstandard (Debian).

    /usr/bin/python3 tests/vectors/gen_refused_vectors.py tests/vectors/container-v1-refused
"""
import hashlib
import os
import sys

import nacl.bindings as sodium
import nacl.public
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "container-v1")
PLAIN = b"custodian refused-object test vector: a reader must refuse this object.\n" * 40


def key_line(name):
    with open(os.path.join(KEYS, name)) as f:
        return bytes.fromhex(f.read().split("\n")[1])


PK = key_line("backup.pub")


def header(flags, pk=PK, version=1, key_id=None):
    """The 122-byte header: magic, version, flags, key id, sealed key, stream header;
    returns (header bytes, secretstream state)."""
    object_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    sealed = nacl.public.SealedBox(nacl.public.PublicKey(pk)).encrypt(object_key)
    assert len(sealed) == 80
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, object_key)
    if key_id is None:
        key_id = hashlib.blake2b(pk, digest_size=32).digest()[:8]
    h = b"CSTDOBJ\n" + bytes([version, flags]) + key_id + sealed + stream_header
    assert len(h) == 122
    return h, state


def chunk(state, h, payload, tag):
    ct = sodium.crypto_secretstream_xchacha20poly1305_push(state, payload, h, tag)
    return len(ct).to_bytes(4, "little") + ct


def seal(payload, flags, cut=65536, tags=None, **kw):
    """payload in chunks of `cut` bytes, the last one TAG_FINAL (or `tags`)."""
    h, state = header(flags, **kw)
    parts = [payload[i:i + cut] for i in range(0, len(payload), cut)] or [b""]
    tags = tags or [0] * (len(parts) - 1) + [3]
    return h + b"".join(chunk(state, h, p, t) for p, t in zip(parts, tags))


def frame(data=PLAIN, checksum=True, content_size=True, window_log=None, dict_data=None,
          level=3):
    params = {}
    if window_log:
        params["compression_params"] = zstandard.ZstdCompressionParameters.from_level(
            level, window_log=window_log, write_checksum=checksum,
            write_content_size=content_size)
    else:
        params.update(level=level, write_checksum=checksum, write_content_size=content_size)
    c = zstandard.ZstdCompressor(dict_data=dict_data, **params)
    if content_size:
        return c.compress(data)
    # streamed: no content size in the frame header, the window as set
    out = c.compressobj()
    return out.compress(data) + out.flush()


def empty_chunk_in_the_middle():
    h, state = header(0)
    return (h + chunk(state, h, PLAIN[:100], 0) + chunk(state, h, b"", 0)
            + chunk(state, h, PLAIN[100:], 3))


def skippable(body=b"not part of the plaintext"):
    return (0x184D2A50).to_bytes(4, "little") + len(body).to_bytes(4, "little") + body


def fhd(f):
    """The frame header descriptor byte and the window size the frame asks for."""
    assert f[:4] == b"\x28\xb5\x2f\xfd"
    d = f[4]
    single = d >> 5 & 1
    if not single:
        e, m = f[5] >> 3, f[5] & 7
        base = 1 << (10 + e)
        return d, base + (base // 8) * m
    return d, None


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sk_other = nacl.public.PrivateKey.generate()
    samples = [b"invoice %05d total %d.%02d clinic Tampa Bay OT\n" % (i, i * 7, i % 100)
               for i in range(2000)]
    trained = zstandard.train_dictionary(2048, samples, dict_id=0x2a2a2a2a)
    big_window = frame(content_size=False, window_log=24)
    assert fhd(big_window)[1] == 16 << 20
    at_limit = frame(content_size=False, window_log=23)
    assert fhd(at_limit)[1] == 8 << 20
    no_sum = frame(checksum=False)
    assert fhd(no_sum)[0] & 4 == 0
    with_dict = frame(data=b"".join(samples[:50]), dict_data=trained)
    assert fhd(with_dict)[0] & 3 != 0
    good = frame()

    cases = [
        # name, verdict, why, bytes
        ("window-8mib.cst", "open", "zstd frame with an 8 MiB window, the largest allowed",
         seal(at_limit, 1)),
        ("tiny-chunks.cst", "open", "zstd frame cut into chunks of 7 payload bytes",
         seal(good, 1, cut=7)),
        ("empty-chunk-before-final.cst", "open",
         "raw payload, then a chunk of 0 payload bytes, then the final chunk",
         empty_chunk_in_the_middle()),
        ("no-checksum.cst", "integrity", "zstd frame without a content checksum",
         seal(no_sum, 1)),
        ("window-16mib.cst", "integrity", "zstd frame asking for a 16 MiB window",
         seal(big_window, 1)),
        ("dictionary.cst", "integrity", "zstd frame that needs dictionary 0x2a2a2a2a",
         seal(with_dict, 1)),
        ("skippable-first.cst", "integrity",
         "a skippable frame, then a valid frame of the plaintext", seal(skippable() + good, 1)),
        ("skippable-after.cst", "integrity",
         "a valid frame of the plaintext, then a skippable frame", seal(good + skippable(), 1)),
        ("two-frames.cst", "integrity", "two valid frames (zstd -d would join them)",
         seal(good + good, 1)),
        ("truncated-frame.cst", "integrity", "a zstd frame cut short inside a valid container",
         seal(good[:-9], 1)),
        ("empty-compressed.cst", "integrity", "flags say zstd but the payload is empty",
         seal(b"", 1)),
        ("not-zstd.cst", "integrity", "flags say zstd but the payload is plain text",
         seal(PLAIN, 1)),
        ("version-2.cst", "integrity", "container version 2", seal(PLAIN, 0, version=2)),
        ("flags-02.cst", "integrity", "reserved flags bit 1 set", seal(PLAIN, 2)),
        ("bad-magic.cst", "integrity", "magic CSTDOBJ followed by CR instead of LF",
         b"CSTDOBJ\r" + seal(PLAIN, 0)[8:]),
        ("short-header.cst", "integrity", "121 bytes", seal(PLAIN, 0)[:121]),
        ("no-final-chunk.cst", "integrity", "every chunk TAG_MESSAGE, none TAG_FINAL",
         seal(PLAIN, 0, cut=1000, tags=[0, 0, 0])),
        ("cut-after-chunk.cst", "integrity", "the final chunk removed (ends on a chunk boundary)",
         (lambda o: o[:122 + 4 + 1000 + 17])(seal(PLAIN, 0, cut=1000))),
        ("cut-inside-chunk.cst", "integrity", "ends 5 bytes into a chunk's ciphertext",
         (lambda o: o[:122 + 4 + 5])(seal(PLAIN, 0))),
        ("trailing-byte.cst", "integrity", "one byte after the final chunk",
         seal(PLAIN, 0) + b"\x00"),
        ("length-16.cst", "integrity", "a chunk length of 16 (under 17)",
         (lambda o: o[:122] + (16).to_bytes(4, "little") + o[126:])(seal(PLAIN, 0))),
        ("length-65554.cst", "integrity", "a chunk length of 65554 (over 65553)",
         (lambda o: o[:122] + (65554).to_bytes(4, "little") + o[126:])(
             seal(os.urandom(70000), 0))),
        ("tag-push.cst", "integrity", "a chunk with tag 0x01 (TAG_PUSH)",
         seal(PLAIN, 0, cut=1000, tags=[1, 0, 3])),
        ("tag-rekey-final.cst", "integrity", "the last chunk with tag 0x02 (TAG_REKEY)",
         seal(PLAIN, 0, cut=1000, tags=[0, 0, 2])),
        ("flipped-ciphertext.cst", "integrity", "one ciphertext bit flipped in the last chunk",
         (lambda o: o[:-20] + bytes([o[-20] ^ 1]) + o[-19:])(seal(PLAIN, 0))),
        ("flipped-header.cst", "integrity",
         "one bit flipped in the stream header (additional data of every chunk)",
         (lambda o: o[:110] + bytes([o[110] ^ 0x80]) + o[111:])(seal(PLAIN, 0))),
        ("damaged-sealed-key.cst", "integrity",
         "one bit flipped in the sealed key; the key id is this key's",
         (lambda o: o[:60] + bytes([o[60] ^ 4]) + o[61:])(seal(PLAIN, 0))),
        ("damaged-key-id.cst", "integrity",
         "one bit flipped in the key id; the sealed key opens with this key (damage, not a "
         "key mismatch)", (lambda o: o[:12] + bytes([o[12] ^ 1]) + o[13:])(seal(PLAIN, 0))),
        ("other-key.cst", "key-mismatch",
         "sealed to another public key, whose key id it carries",
         seal(PLAIN, 0, pk=bytes(sk_other.public_key))),
    ]
    with open(os.path.join(out_dir, "expected.tsv"), "w") as f:
        f.write("name\tverdict\tsha256 of the plaintext (open) or -\twhat it is\n")
        for name, verdict, why, data in cases:
            with open(os.path.join(out_dir, name), "wb") as o:
                o.write(data)
            plain = "-"
            if verdict == "open":
                plain = hashlib.sha256(PLAIN).hexdigest()
            f.write(f"{name}\t{verdict}\t{plain}\t{why}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.join(HERE, "container-v1-refused")))
