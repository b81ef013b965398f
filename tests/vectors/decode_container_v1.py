#!/usr/bin/env python3
"""decode_container_v1.py - an independent decoder for container format v1.

It implements docs/FORMAT.md, appendix A ("The primitives, without
libsodium") from the primitives up: X25519, ChaCha20 and Poly1305 come from
the Python "cryptography" package, while HSalsa20, XSalsa20, HChaCha20 and
the secretstream construction are written out here. It shares no code with
shipper/container.c, so decoding the released vector with it shows the
specification is complete. It is a reference, not a tool: slow, and it
trusts nothing but checks everything.

    python3 tests/vectors/decode_container_v1.py OBJECT BACKUP_KEY_FILE > plain

The plaintext goes to stdout (through `zstd -dc` when the payload is a
zstd frame); the exit status is 0 only if every check passed.
"""

import hashlib
import struct
import subprocess
import sys

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

MASK = 0xFFFFFFFF
SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def rotl(v, n):
    return ((v << n) & MASK) | (v >> (32 - n))


def salsa20_rounds(x):
    def qr(a, b, c, d):
        x[b] ^= rotl((x[a] + x[d]) & MASK, 7)
        x[c] ^= rotl((x[b] + x[a]) & MASK, 9)
        x[d] ^= rotl((x[c] + x[b]) & MASK, 13)
        x[a] ^= rotl((x[d] + x[c]) & MASK, 18)

    for _ in range(10):
        qr(0, 4, 8, 12), qr(5, 9, 13, 1), qr(10, 14, 2, 6), qr(15, 3, 7, 11)
        qr(0, 1, 2, 3), qr(5, 6, 7, 4), qr(10, 11, 8, 9), qr(15, 12, 13, 14)


def salsa20_state(key, sixteen):
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1],
            n[2], n[3], SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3]]


def hsalsa20(key, sixteen):
    x = salsa20_state(key, sixteen)
    salsa20_rounds(x)
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def salsa20_block(key, nonce8, counter):
    x = salsa20_state(key, nonce8 + struct.pack("<Q", counter))
    start = list(x)
    salsa20_rounds(x)
    return struct.pack("<16I", *((a + b) & MASK for a, b in zip(x, start)))


def xsalsa20_poly1305_open(box, nonce24, key):
    """crypto_secretbox_open_easy: box = MAC(16) || ciphertext."""
    subkey = hsalsa20(key, nonce24[:16])
    stream = b"".join(salsa20_block(subkey, nonce24[16:], i) for i in range((32 + len(box)) // 64 + 1))
    mac, ciphertext = box[:16], box[16:]
    poly = Poly1305(stream[:32])
    poly.update(ciphertext)
    poly.verify(mac)
    return bytes(a ^ b for a, b in zip(ciphertext, stream[32:]))


def box_seal_open(sealed, public_key, secret_key):
    """crypto_box_seal_open: sealed = ephemeral pk(32) || secretbox."""
    ephemeral = sealed[:32]
    shared = X25519PrivateKey.from_private_bytes(secret_key).exchange(
        X25519PublicKey.from_public_bytes(ephemeral))
    box_key = hsalsa20(shared, bytes(16))  # crypto_box_beforenm
    nonce = hashlib.blake2b(ephemeral + public_key, digest_size=24).digest()
    return xsalsa20_poly1305_open(sealed[32:], nonce, box_key)


def hchacha20(key, sixteen):
    x = list(SIGMA) + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", sixteen))

    def qr(a, b, c, d):
        x[a] = (x[a] + x[b]) & MASK; x[d] = rotl(x[d] ^ x[a], 16)
        x[c] = (x[c] + x[d]) & MASK; x[b] = rotl(x[b] ^ x[c], 12)
        x[a] = (x[a] + x[b]) & MASK; x[d] = rotl(x[d] ^ x[a], 8)
        x[c] = (x[c] + x[d]) & MASK; x[b] = rotl(x[b] ^ x[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12), qr(1, 5, 9, 13), qr(2, 6, 10, 14), qr(3, 7, 11, 15)
        qr(0, 5, 10, 15), qr(1, 6, 11, 12), qr(2, 7, 8, 13), qr(3, 4, 9, 14)
    return struct.pack("<8I", *(x[0:4] + x[12:16]))


def chacha20_ietf_xor(key, nonce12, block_counter, data):
    cipher = Cipher(algorithms.ChaCha20(key, struct.pack("<I", block_counter) + nonce12), mode=None)
    return cipher.encryptor().update(data)


def pad16(n):
    return bytes((16 - n) & 15)


class SecretstreamPull:
    """crypto_secretstream_xchacha20poly1305 init_pull / pull / rekey."""

    def __init__(self, header24, key):
        self.key = hchacha20(key, header24[:16])
        self.counter = 1
        self.inonce = header24[16:24]

    def nonce(self):
        return struct.pack("<I", self.counter) + self.inonce

    def rekey(self):
        fresh = chacha20_ietf_xor(self.key, self.nonce(), 0, self.key + self.inonce)
        self.key, self.inonce, self.counter = fresh[:32], fresh[32:40], 1

    def pull(self, chunk, ad):
        if len(chunk) < 17:
            raise ValueError("chunk shorter than 17 bytes")
        nonce = self.nonce()
        poly = Poly1305(chacha20_ietf_xor(self.key, nonce, 0, bytes(64))[:32])
        tag_block = bytearray(chacha20_ietf_xor(self.key, nonce, 1, bytes(64)))
        tag = tag_block[0] ^ chunk[0]
        tag_block[0] = chunk[0]
        ciphertext, mac = chunk[1:-16], chunk[-16:]
        poly.update(ad + pad16(len(ad)))
        # libsodium pads with (0x10 - 64 + mlen) & 0xf zero bytes here, which is
        # mlen % 16 bytes and not the usual "up to a multiple of 16".
        poly.update(bytes(tag_block) + ciphertext + bytes(len(ciphertext) % 16))
        poly.update(struct.pack("<QQ", len(ad), 64 + len(ciphertext)))
        poly.verify(mac)
        message = chacha20_ietf_xor(self.key, nonce, 2, ciphertext)
        self.inonce = bytes(a ^ b for a, b in zip(self.inonce, mac[:8]))
        self.counter = (self.counter + 1) & MASK
        if tag & 0x02 or self.counter == 0:
            self.rekey()
        return message, tag


def read_key_file(path, kind):
    with open(path, "r", encoding="ascii", newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if len(lines) != 3 or lines[0] != "custodian %s v1" % kind or lines[2] != "":
        raise ValueError("%s is not a '%s' key file" % (path, kind))
    return bytes.fromhex(lines[1])


def fail(why):
    sys.stderr.write("integrity error: %s\n" % why)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: decode_container_v1.py OBJECT BACKUP_KEY_FILE > plain\n")
        return 2
    secret_key = read_key_file(sys.argv[2], "backup-secret-key")
    public_key = X25519PrivateKey.from_private_bytes(secret_key).public_key().public_bytes_raw()
    with open(sys.argv[1], "rb") as f:
        obj = f.read()
    header = obj[:122]
    if len(header) < 122 or header[:8] != b"CSTDOBJ\n":
        fail("not a v1 custodian object")
    if header[8] != 1 or header[9] & 0xFE:
        fail("unknown version or flags")
    if header[10:18] != hashlib.blake2b(public_key, digest_size=32).digest()[:8]:
        fail("sealed to key id %s, not to this key" % header[10:18].hex())
    try:
        stream = SecretstreamPull(header[98:122], box_seal_open(header[18:98], public_key, secret_key))
    except Exception:
        fail("the sealed object key does not open")
    payload, at, tag = [], 122, 0
    while tag != 0x03:
        if at + 4 > len(obj):
            fail("truncated: no final chunk")
        (length,) = struct.unpack_from("<I", obj, at)
        if not 17 <= length <= 65536 + 17 or at + 4 + length > len(obj):
            fail("bad chunk length %d at offset %d" % (length, at))
        try:
            message, tag = stream.pull(obj[at + 4:at + 4 + length], header)
        except Exception:
            fail("chunk at offset %d fails authentication" % at)
        if tag not in (0x00, 0x03):
            fail("unexpected tag %d" % tag)
        payload.append(message)
        at += 4 + length
    if at != len(obj):
        fail("data after the final chunk")
    payload = b"".join(payload)
    sys.stdout.flush()
    if header[9] & 1:
        done = subprocess.run(["zstd", "-dcq"], input=payload, stdout=sys.stdout.buffer)
        if done.returncode != 0:
            fail("payload is not a valid zstd frame")
    else:
        sys.stdout.buffer.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
