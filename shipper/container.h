/*
 * container.h - the encrypted object container (format v1).
 *
 * Every backed-up object is stored as one container: a fixed 122-byte
 * header (magic, version, flags, key id, the per-object key sealed to the
 * operator's X25519 public key, the secretstream header) followed by
 * length-prefixed crypto_secretstream_xchacha20poly1305 chunks of the
 * payload, which is either one zstd frame of the plaintext or the
 * plaintext itself. docs/FORMAT.md is the byte-by-byte specification;
 * tests/vectors/container-v1/ holds a released test vector.
 *
 * The agent only ever holds the public key: sealing needs nothing secret,
 * opening needs the operator's secret key. Both directions stream through
 * fixed buffers, so memory does not grow with the object's size.
 */
#ifndef CST_CONTAINER_H
#define CST_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/*
 * Compress the first 128 KiB at zstd level 1 as a trial; if that saves less
 * than 3 % the object is stored raw (already-compressed images and PDFs),
 * otherwise it is compressed at zstd level 3.
 */
#define CRYPT_LEVEL_AUTO (-1000)

/* Size of the fixed header and of the key id, in bytes. */
#define CRYPT_HEADER_SIZE 122
#define CRYPT_KEY_ID_SIZE 8

struct crypt_sealed_info {
    uint64_t plain_size;             /* bytes given to crypt_sealer_write */
    uint64_t stored_size;            /* bytes written to out_fd (the whole object) */
    unsigned char plain_sha256[32];  /* SHA-256 of the plaintext */
    unsigned char stored_sha256[32]; /* SHA-256 of the object as written to out_fd */
    int compressed;                  /* 1 if the payload is a zstd frame, 0 if raw */
};

struct crypt_sealer;

/*
 * Start sealing one object to public_key, written to out_fd as it is
 * produced. level: CRYPT_LEVEL_AUTO, 0 (store raw) or a zstd level 1..19.
 * Nothing is written until the compression decision is made (after 128 KiB
 * of plaintext, or at finish). The caller owns out_fd and its durability
 * (fsync/rename); the sealer never closes or syncs it.
 */
struct crypt_sealer *crypt_sealer_new(const unsigned char public_key[32], int level, int out_fd,
                                      struct cst_err *err);

/* Feed plaintext. After any error the sealer is unusable and only _free is allowed. */
int crypt_sealer_write(struct crypt_sealer *s, const void *buf, size_t len, struct cst_err *err);

/* The object's whole plaintext at once, whose SHA-256 the caller has just computed from
 * this same buffer (a small file hashed to name its spool file): the sealer takes that
 * digest instead of hashing the bytes again. Only on a fresh or reset sealer, and nothing
 * may be written after it. */
int crypt_sealer_write_whole(struct crypt_sealer *s, const void *buf, size_t len,
                             const unsigned char plain_sha256[32], struct cst_err *err);

/*
 * Write the rest of the object (final chunk) and fill *info (info may be
 * NULL). The object key is wiped here already; the sealer must still be
 * freed.
 */
int crypt_sealer_finish(struct crypt_sealer *s, struct crypt_sealed_info *info,
                        struct cst_err *err);

/* Start the next object to public_key on out_fd with the same level, reusing the
 * sealer's buffers, contexts and secure memory (a worker seals thousands of small
 * files). A new object key and stream header every time, as with _new. Allowed after
 * finish or after an error; on failure only _free is allowed. */
int crypt_sealer_reset(struct crypt_sealer *s, const unsigned char public_key[32], int out_fd,
                       struct cst_err *err);

/* NULL is fine. Wipes the object key. */
void crypt_sealer_free(struct crypt_sealer *s);

/*
 * Decrypt and decompress a whole object read from in_fd (read to its end;
 * pipes are fine, nothing seeks), writing the plaintext to out_fd. Fills
 * plain_sha256_out and plain_size_out (either may be NULL).
 *
 * Returns 0, or -1 with err->msg starting "integrity error: " for anything
 * wrong with the object (bad magic, unknown version or flags, damaged
 * header, MAC failure, truncation, trailing data, bad zstd frame), or a
 * different message for I/O errors, for a secret key that is not the
 * public key's, and for an object sealed to another key ("object was
 * sealed to key id <hex>, not to this secret key (key id <hex>)").
 *
 * Plaintext is written chunk by chunk, each only after its chunk
 * authenticated, but truncation or damage further on is found only later:
 * on -1, whatever reached out_fd must be discarded (restore into a
 * temporary name and rename only on 0).
 */
int crypt_open_fd(int in_fd, int out_fd, const unsigned char public_key[32],
                  const unsigned char secret_key[32], unsigned char plain_sha256_out[32],
                  uint64_t *plain_size_out, struct cst_err *err);

/*
 * crypt_open_fd that stops as soon as the plaintext would grow past
 * max_plain bytes: -1 with "integrity error: object decompresses to more
 * than N bytes expected", and at most max_plain bytes reached out_fd.
 * Restores pass the size the catalog recorded, so a forged object (anyone
 * with the public key can seal one) cannot fill the disk before its hash
 * is found wrong; the SHA-256 is still computed and must still be compared.
 */
int crypt_open_fd_limit(int in_fd, int out_fd, const unsigned char public_key[32],
                        const unsigned char secret_key[32], uint64_t max_plain,
                        unsigned char plain_sha256_out[32], uint64_t *plain_size_out,
                        struct cst_err *err);

/* Key id of a public key: the first 8 bytes of unkeyed BLAKE2b-256 over it. */
void crypt_key_id(const unsigned char public_key[32], unsigned char id[8]);

#endif
