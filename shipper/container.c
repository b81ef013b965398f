/*
 * container.c - sealing and opening objects in container format v1.
 *
 * This file owns the on-disk object format (docs/FORMAT.md): the sealer
 * (plaintext -> SHA-256 -> optional zstd -> secretstream chunks -> out_fd)
 * and the opener (the reverse, refusing anything that is not exactly what
 * a v1 sealer writes). Both stream through a few fixed buffers: the sealer
 * holds at most 128 KiB of plaintext (for the compression trial) plus one
 * chunk of payload and one chunk of ciphertext; the opener one chunk of
 * each plus zstd's output buffer.
 *
 * Header layout (offsets in bytes):
 *     0   8  magic "CSTDOBJ\n"
 *     8   1  version (1)
 *     9   1  flags (bit 0: payload is a zstd frame)
 *    10   8  key id of the recipient public key
 *    18  80  crypto_box_seal of the 32-byte secretstream key
 *    98  24  crypto_secretstream_xchacha20poly1305 header
 * then chunks: u32 little-endian ciphertext length, ciphertext. The whole
 * 122-byte header is the additional data of every chunk.
 */
#include "shipper/container.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "shipper/stream_push.h"

#define MAGIC "CSTDOBJ\n"
#define MAGIC_SIZE 8
#define FORMAT_VERSION 1
#define FLAG_ZSTD 0x01
#define FLAGS_KNOWN FLAG_ZSTD

#define OFF_VERSION 8
#define OFF_FLAGS 9
#define OFF_KEY_ID 10
#define OFF_SEALED_KEY 18
#define OFF_STREAM_HEADER 98

#define STREAM_KEY_SIZE crypto_secretstream_xchacha20poly1305_KEYBYTES
#define SEALED_KEY_SIZE (crypto_box_SEALBYTES + STREAM_KEY_SIZE)
#define STREAM_HEADER_SIZE crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL

/* Payload bytes per chunk; a chunk's ciphertext is this plus ABYTES at most. */
#define CHUNK_PAYLOAD_MAX 65536
#define CHUNK_CIPHER_MAX (CHUNK_PAYLOAD_MAX + ABYTES)
#define LENGTH_SIZE 4
#define RECORD_MAX (LENGTH_SIZE + CHUNK_CIPHER_MAX)

/* The compression trial of CRYPT_LEVEL_AUTO. */
#define TRIAL_SIZE (128 * 1024)
#define TRIAL_LEVEL 1
#define AUTO_LEVEL 3
#define AUTO_MIN_SAVING_PERCENT 3
/* Levels 20..22 need windows up to 128 MiB+ to decode; not worth it for backups. */
#define LEVEL_MAX 19
/* What a reader accepts of the payload's zstd frame (docs/FORMAT.md 4.3): the largest
 * window levels 1..19 use, and a header of at most magic, descriptor, window byte and an
 * 8-byte content size (no dictionary id: one is refused). */
#define FRAME_WINDOW_MAX (8u << 20)
#define FRAME_WINDOW_LOG_MAX 23
#define FRAME_HEAD_MAX 14

_Static_assert(OFF_SEALED_KEY == OFF_KEY_ID + CRYPT_KEY_ID_SIZE, "header layout");
_Static_assert(OFF_STREAM_HEADER == OFF_SEALED_KEY + SEALED_KEY_SIZE, "header layout");
_Static_assert(CRYPT_HEADER_SIZE == OFF_STREAM_HEADER + STREAM_HEADER_SIZE, "header layout");
_Static_assert(SEALED_KEY_SIZE == 80, "crypto_box_seal of a 32-byte key is 80 bytes");
_Static_assert(ABYTES == 17, "secretstream ABYTES");

/* Key material, kept in sodium_malloc'd memory (guard pages, wiped on free). */
struct stream_secrets {
    unsigned char object_key[STREAM_KEY_SIZE];
    crypto_secretstream_xchacha20poly1305_state state;
};

struct crypt_sealer {
    int out_fd;
    int level; /* as requested: CRYPT_LEVEL_AUTO, 0, 1..19 */
    int decided;
    int compressed;
    int frame_done;     /* the whole zstd frame is in payload already (compress_whole) */
    int header_pending; /* the header is final but not written: it goes with the first chunk */
    int finished;
    int failed;
    struct stream_secrets *secrets;
    struct stream_push *push; /* the chunks' encryption (OpenSSL for the bulk) */
    unsigned char header[CRYPT_HEADER_SIZE];
    ZSTD_CCtx *zstd;
    EVP_MD_CTX *plain_hash;
    EVP_MD_CTX *stored_hash;
    int plain_known; /* the plaintext came whole with its digest (write_whole) */
    unsigned char plain_digest[32];
    uint64_t plain_size;
    uint64_t stored_size;
    /* Plaintext held back until the compression decision. */
    unsigned char *trial;
    size_t trial_len;
    /* Payload of the chunk being filled; pushed only once more payload follows or at finish. */
    unsigned char *payload;
    size_t payload_len;
    /* Length prefix + ciphertext of one chunk; also the trial's scratch output. */
    unsigned char *record;
};

static void hex_encode(const unsigned char *bin, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        hex[2 * i] = digits[bin[i] >> 4];
        hex[2 * i + 1] = digits[bin[i] & 0x0f];
    }
    hex[2 * len] = '\0';
}

static void put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)((v >> 24) & 0xff);
}

static uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Every object problem reads "integrity error: ..." so callers and operators can tell it from I/O.
 */
static int integrity_error(struct cst_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int integrity_error(struct cst_err *err, const char *fmt, ...)
{
    char why[CST_ERR_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return cst_err_set(err, "integrity error: %s", why);
}

static int write_all(int fd, const unsigned char *buf, size_t len, const char *what,
                     struct cst_err *err)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cst_err_sys(err, "cannot write %s", what);
        }
        if (n == 0)
            return cst_err_set(err, "cannot write %s: write returned 0", what);
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read up to len bytes, stopping early only at end of file; *got says how many arrived. */
static int read_full(int fd, unsigned char *buf, size_t len, size_t *got, struct cst_err *err)
{
    size_t done = 0;

    *got = 0;
    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cst_err_sys(err, "cannot read object");
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

static EVP_MD_CTX *sha256_new(struct cst_err *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL) {
        cst_err_set(err, "cannot allocate a SHA-256 context");
        return NULL;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        cst_err_set(err, "cannot initialise SHA-256 (libcrypto)");
        return NULL;
    }
    return ctx;
}

static int sha256_update(EVP_MD_CTX *ctx, const void *buf, size_t len, struct cst_err *err)
{
    if (len > 0 && EVP_DigestUpdate(ctx, buf, len) != 1)
        return cst_err_set(err, "SHA-256 update failed (libcrypto)");
    return 0;
}

static int sha256_final(EVP_MD_CTX *ctx, unsigned char out[32], struct cst_err *err)
{
    unsigned int len = 0;

    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32)
        return cst_err_set(err, "SHA-256 finalisation failed (libcrypto)");
    return 0;
}

static int sodium_ready(struct cst_err *err)
{
    if (sodium_init() < 0)
        return cst_err_set(err, "cannot initialise libsodium");
    return 0;
}

void crypt_key_id(const unsigned char public_key[32], unsigned char id[8])
{
    unsigned char digest[crypto_generichash_BYTES];

    /*
     * No sodium_init() needed: BLAKE2b starts with the portable code and
     * init only swaps in a faster one, so the id is the same either way.
     */
    crypto_generichash(digest, sizeof(digest), public_key, 32, NULL, 0);
    memcpy(id, digest, CRYPT_KEY_ID_SIZE);
}

/* ---- sealing ---- */

static int seal_fail(struct crypt_sealer *s)
{
    s->failed = 1;
    if (s->push)
        stream_push_wipe(s->push);
    return -1;
}

/* The header and the first chunk in one system call (a small object is nothing more). */
static int write_with_header(struct crypt_sealer *s, const unsigned char *buf, size_t len,
                             struct cst_err *err)
{
    struct iovec iov[2] = {{s->header, CRYPT_HEADER_SIZE}, {(void *)buf, len}};
    ssize_t n;

    s->header_pending = 0;
    do
        n = writev(s->out_fd, iov, 2);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return cst_err_sys(err, "cannot write %s", "sealed object");
    if ((size_t)n < CRYPT_HEADER_SIZE &&
        write_all(s->out_fd, s->header + n, CRYPT_HEADER_SIZE - (size_t)n, "sealed object", err) !=
            0)
        return -1;
    n = (size_t)n < CRYPT_HEADER_SIZE ? 0 : n - (ssize_t)CRYPT_HEADER_SIZE;
    if ((size_t)n < len &&
        write_all(s->out_fd, buf + n, len - (size_t)n, "sealed object", err) != 0)
        return -1;
    if (sha256_update(s->stored_hash, s->header, CRYPT_HEADER_SIZE, err) != 0)
        return -1;
    s->stored_size += CRYPT_HEADER_SIZE;
    return 0;
}

static int write_stored(struct crypt_sealer *s, const unsigned char *buf, size_t len,
                        struct cst_err *err)
{
    if (s->header_pending) {
        if (write_with_header(s, buf, len, err) != 0)
            return -1;
    } else if (write_all(s->out_fd, buf, len, "sealed object", err) != 0) {
        return -1;
    }
    if (sha256_update(s->stored_hash, buf, len, err) != 0)
        return -1;
    s->stored_size += len;
    return 0;
}

static int push_chunk(struct crypt_sealer *s, unsigned char tag, struct cst_err *err)
{
    size_t cipher_len = s->payload_len + ABYTES;

    if (stream_push(s->push, &s->secrets->state, s->record + LENGTH_SIZE, s->payload,
                    s->payload_len, s->header, CRYPT_HEADER_SIZE, tag, err) != 0)
        return -1;
    put_u32le(s->record, (uint32_t)cipher_len);
    s->payload_len = 0;
    return write_stored(s, s->record, LENGTH_SIZE + (size_t)cipher_len, err);
}

/*
 * A full chunk is held until more payload arrives: only then is it certain
 * it is not the last one, which must carry TAG_FINAL.
 */
static int feed_raw(struct crypt_sealer *s, const unsigned char *buf, size_t len,
                    struct cst_err *err)
{
    while (len > 0) {
        size_t room;

        if (s->payload_len == CHUNK_PAYLOAD_MAX && push_chunk(s, TAG_MESSAGE, err) != 0)
            return -1;
        room = CHUNK_PAYLOAD_MAX - s->payload_len;
        if (room > len)
            room = len;
        memcpy(s->payload + s->payload_len, buf, room);
        s->payload_len += room;
        buf += room;
        len -= room;
    }
    return 0;
}

static int feed_zstd(struct crypt_sealer *s, const unsigned char *buf, size_t len,
                     ZSTD_EndDirective end, struct cst_err *err)
{
    ZSTD_inBuffer in = {buf, len, 0};

    for (;;) {
        ZSTD_outBuffer out;
        size_t left;

        if (s->payload_len == CHUNK_PAYLOAD_MAX && push_chunk(s, TAG_MESSAGE, err) != 0)
            return -1;
        out.dst = s->payload;
        out.size = CHUNK_PAYLOAD_MAX;
        out.pos = s->payload_len;
        left = ZSTD_compressStream2(s->zstd, &out, &in, end);
        if (ZSTD_isError(left))
            return cst_err_set(err, "zstd compression failed: %s", ZSTD_getErrorName(left));
        s->payload_len = out.pos;
        if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

static int feed(struct crypt_sealer *s, const unsigned char *buf, size_t len, struct cst_err *err)
{
    if (s->compressed)
        return feed_zstd(s, buf, len, ZSTD_e_continue, err);
    return feed_raw(s, buf, len, err);
}

static int zstd_setup(struct crypt_sealer *s, int level, struct cst_err *err)
{
    size_t rc;

    rc = ZSTD_CCtx_reset(s->zstd, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(rc))
        rc = ZSTD_CCtx_setParameter(s->zstd, ZSTD_c_compressionLevel, level);
    /* Redundant with the MAC, but lets `zstd -d` alone vouch for a decrypted payload. */
    if (!ZSTD_isError(rc))
        rc = ZSTD_CCtx_setParameter(s->zstd, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(rc))
        return cst_err_set(err, "cannot set up zstd level %d: %s", level, ZSTD_getErrorName(rc));
    return 0;
}

/* Compress the held-back plaintext at the trial level and say whether it saved enough. */
static int trial_says_compress(struct crypt_sealer *s, int *compress, struct cst_err *err)
{
    ZSTD_inBuffer in = {s->trial, s->trial_len, 0};
    uint64_t trial_out = 0;
    size_t left;

    *compress = 0;
    if (s->trial_len == 0)
        return 0;
    if (zstd_setup(s, TRIAL_LEVEL, err) != 0)
        return -1;
    do {
        /* The record buffer is unused until the header is out: borrow it as scratch. */
        ZSTD_outBuffer out = {s->record, RECORD_MAX, 0};

        left = ZSTD_compressStream2(s->zstd, &out, &in, ZSTD_e_end);
        if (ZSTD_isError(left))
            return cst_err_set(err, "zstd trial compression failed: %s", ZSTD_getErrorName(left));
        trial_out += out.pos;
    } while (left != 0);
    *compress = trial_out * 100 < (uint64_t)s->trial_len * (100 - AUTO_MIN_SAVING_PERCENT);
    return 0;
}

/*
 * The whole plaintext is held back and fits one chunk: compress it once, at the level it
 * would get, straight into the chunk's payload, and keep that frame if it saves enough.
 * The same rule as the trial's, in one pass instead of two (the trial's, then the real
 * one): for a small file the second pass cost as much as the first.
 */
static int compress_whole(struct crypt_sealer *s, int *kept, struct cst_err *err)
{
    size_t n;

    *kept = 0;
    if (s->trial_len == 0)
        return 0;
    if (zstd_setup(s, AUTO_LEVEL, err) != 0)
        return -1;
    n = ZSTD_compress2(s->zstd, s->payload, CHUNK_PAYLOAD_MAX, s->trial, s->trial_len);
    if (ZSTD_isError(n)) {
        /* Larger than the chunk, so larger than the plaintext: stored as it is. */
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return 0;
        return cst_err_set(err, "zstd compression failed: %s", ZSTD_getErrorName(n));
    }
    if ((uint64_t)n * 100 < (uint64_t)s->trial_len * (100 - AUTO_MIN_SAVING_PERCENT)) {
        s->payload_len = n;
        *kept = 1;
    }
    return 0;
}

/*
 * Fix the flags byte, write the header (it is also every chunk's additional
 * data, so it must be final before the first push; a small object's goes
 * with its one chunk, in one write), then release the
 * held-back plaintext into the payload. at_end: the trial buffer holds the
 * whole plaintext, so its size can go into the zstd frame header.
 */
static int decide(struct crypt_sealer *s, int at_end, struct cst_err *err)
{
    int level = s->level;

    if (level == CRYPT_LEVEL_AUTO && at_end && s->trial_len <= CHUNK_PAYLOAD_MAX) {
        int kept;

        if (compress_whole(s, &kept, err) != 0)
            return -1;
        s->compressed = s->frame_done = kept;
        s->header[OFF_FLAGS] = s->compressed ? FLAG_ZSTD : 0;
        s->decided = 1;
        s->header_pending = 1; /* written with the one chunk (write_with_header) */
        if (!kept && feed_raw(s, s->trial, s->trial_len, err) != 0)
            return -1;
        s->trial_len = 0;
        return 0;
    }
    if (level == CRYPT_LEVEL_AUTO) {
        int compress;

        if (trial_says_compress(s, &compress, err) != 0)
            return -1;
        level = compress ? AUTO_LEVEL : 0;
    }
    s->compressed = level > 0;
    if (s->compressed) {
        if (zstd_setup(s, level, err) != 0)
            return -1;
        if (at_end) {
            size_t rc = ZSTD_CCtx_setPledgedSrcSize(s->zstd, s->trial_len);

            if (ZSTD_isError(rc))
                return cst_err_set(err, "zstd: %s", ZSTD_getErrorName(rc));
        }
    }
    s->header[OFF_FLAGS] = s->compressed ? FLAG_ZSTD : 0;
    s->decided = 1;
    if (write_stored(s, s->header, CRYPT_HEADER_SIZE, err) != 0)
        return -1;
    if (feed(s, s->trial, s->trial_len, err) != 0)
        return -1;
    s->trial_len = 0;
    return 0;
}

static int sealer_start(struct crypt_sealer *s, const unsigned char public_key[32],
                        struct cst_err *err);

struct crypt_sealer *crypt_sealer_new(const unsigned char public_key[32], int level, int out_fd,
                                      struct cst_err *err)
{
    struct crypt_sealer *s;

    if (sodium_ready(err) != 0)
        return NULL;
    if (level != CRYPT_LEVEL_AUTO && (level < 0 || level > LEVEL_MAX)) {
        cst_err_set(err, "compression level %d is out of range (auto, 0 for none, 1..%d)", level,
                    LEVEL_MAX);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        cst_err_set(err, "cannot allocate a sealer: out of memory");
        return NULL;
    }
    s->out_fd = out_fd;
    s->level = level;
    s->trial = malloc(TRIAL_SIZE);
    s->payload = malloc(CHUNK_PAYLOAD_MAX);
    s->record = malloc(RECORD_MAX);
    s->secrets = sodium_malloc(sizeof(*s->secrets));
    if (s->trial == NULL || s->payload == NULL || s->record == NULL || s->secrets == NULL) {
        cst_err_set(err, "cannot allocate sealer buffers: out of memory");
        goto fail;
    }
    if (level != 0) {
        s->zstd = ZSTD_createCCtx();
        if (s->zstd == NULL) {
            cst_err_set(err, "cannot allocate a zstd compression context");
            goto fail;
        }
    }
    s->plain_hash = sha256_new(err);
    if (s->plain_hash == NULL)
        goto fail;
    s->stored_hash = sha256_new(err);
    if (s->stored_hash == NULL)
        goto fail;
    s->push = stream_push_new();
    if (sealer_start(s, public_key, err) != 0)
        goto fail;
    return s;

fail:
    crypt_sealer_free(s);
    return NULL;
}

int crypt_sealer_reset(struct crypt_sealer *s, const unsigned char public_key[32], int out_fd,
                       struct cst_err *err)
{
    if (EVP_DigestInit_ex(s->plain_hash, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(s->stored_hash, EVP_sha256(), NULL) != 1)
        return cst_err_set(err, "cannot initialise SHA-256 (libcrypto)");
    s->out_fd = out_fd;
    s->decided = s->compressed = s->frame_done = s->header_pending = 0;
    s->finished = s->failed = s->plain_known = 0;
    s->plain_size = s->stored_size = 0;
    s->trial_len = s->payload_len = 0;
    if (sealer_start(s, public_key, err) != 0) {
        s->failed = 1;
        return -1;
    }
    return 0;
}

/* A fresh object key, sealed to public_key, and the stream started: every object, new
 * sealer or reused, gets its own key and nonce. */
static int sealer_start(struct crypt_sealer *s, const unsigned char public_key[32],
                        struct cst_err *err)
{
    memcpy(s->header, MAGIC, MAGIC_SIZE);
    s->header[OFF_VERSION] = FORMAT_VERSION;
    s->header[OFF_FLAGS] = 0; /* set by decide() */
    crypt_key_id(public_key, s->header + OFF_KEY_ID);
    crypto_secretstream_xchacha20poly1305_keygen(s->secrets->object_key);
    if (crypto_box_seal(s->header + OFF_SEALED_KEY, s->secrets->object_key, STREAM_KEY_SIZE,
                        public_key) != 0) {
        sodium_memzero(s->secrets->object_key, sizeof(s->secrets->object_key));
        return cst_err_set(err, "cannot seal the object key: the backup public key is not usable");
    }
    if (crypto_secretstream_xchacha20poly1305_init_push(
            &s->secrets->state, s->header + OFF_STREAM_HEADER, s->secrets->object_key) != 0) {
        sodium_memzero(s->secrets->object_key, sizeof(s->secrets->object_key));
        return cst_err_set(err,
                           "cannot start the encrypted stream (crypto_secretstream init_push)");
    }
    /* The state holds everything push needs; the raw key has no further use. */
    sodium_memzero(s->secrets->object_key, sizeof(s->secrets->object_key));
    return 0;
}

static int sealer_usable(struct crypt_sealer *s, struct cst_err *err)
{
    if (s->failed)
        return cst_err_set(err, "sealer already failed; the object must be discarded");
    if (s->finished)
        return cst_err_set(err, "sealer already finished");
    return 0;
}

/* Take len bytes of plaintext, already hashed. */
static int sealer_take(struct crypt_sealer *s, const unsigned char *p, size_t len,
                       struct cst_err *err)
{
    s->plain_size += len;
    if (!s->decided) {
        size_t room = TRIAL_SIZE - s->trial_len;

        if (room > len)
            room = len;
        memcpy(s->trial + s->trial_len, p, room);
        s->trial_len += room;
        p += room;
        len -= room;
        if (len == 0)
            return 0;
        if (decide(s, 0, err) != 0)
            return seal_fail(s);
    }
    if (feed(s, p, len, err) != 0)
        return seal_fail(s);
    return 0;
}

int crypt_sealer_write(struct crypt_sealer *s, const void *buf, size_t len, struct cst_err *err)
{
    if (sealer_usable(s, err) != 0)
        return -1;
    if (s->plain_known) {
        cst_err_set(err, "plaintext written after the whole of it");
        return seal_fail(s);
    }
    if (sha256_update(s->plain_hash, buf, len, err) != 0)
        return seal_fail(s);
    return sealer_take(s, buf, len, err);
}

int crypt_sealer_write_whole(struct crypt_sealer *s, const void *buf, size_t len,
                             const unsigned char plain_sha256[32], struct cst_err *err)
{
    if (sealer_usable(s, err) != 0)
        return -1;
    if (s->plain_known || s->plain_size != 0) {
        cst_err_set(err, "the whole plaintext given after some of it");
        return seal_fail(s);
    }
    s->plain_known = 1;
    memcpy(s->plain_digest, plain_sha256, 32);
    return sealer_take(s, buf, len, err);
}

int crypt_sealer_finish(struct crypt_sealer *s, struct crypt_sealed_info *info, struct cst_err *err)
{
    unsigned char plain_digest[32];
    unsigned char stored_digest[32];

    if (sealer_usable(s, err) != 0)
        return -1;
    if (!s->decided && decide(s, 1, err) != 0)
        return seal_fail(s);
    if (s->compressed && !s->frame_done && feed_zstd(s, NULL, 0, ZSTD_e_end, err) != 0)
        return seal_fail(s);
    if (push_chunk(s, TAG_FINAL, err) != 0)
        return seal_fail(s);
    sodium_memzero(s->secrets, sizeof(*s->secrets));
    stream_push_wipe(s->push);
    if (s->plain_known)
        memcpy(plain_digest, s->plain_digest, 32);
    else if (sha256_final(s->plain_hash, plain_digest, err) != 0)
        return seal_fail(s);
    if (sha256_final(s->stored_hash, stored_digest, err) != 0)
        return seal_fail(s);
    s->finished = 1;
    if (info != NULL) {
        info->plain_size = s->plain_size;
        info->stored_size = s->stored_size;
        memcpy(info->plain_sha256, plain_digest, 32);
        memcpy(info->stored_sha256, stored_digest, 32);
        info->compressed = s->compressed;
    }
    return 0;
}

void crypt_sealer_free(struct crypt_sealer *s)
{
    if (s == NULL)
        return;
    if (s->secrets != NULL)
        sodium_free(s->secrets); /* wipes before unmapping */
    stream_push_free(s->push);
    ZSTD_freeCCtx(s->zstd);
    EVP_MD_CTX_free(s->plain_hash);
    EVP_MD_CTX_free(s->stored_hash);
    free(s->trial);
    free(s->payload);
    free(s->record);
    free(s);
}

/* ---- opening ---- */

struct opener {
    int in_fd;
    int out_fd;
    int compressed;
    int frame_done;    /* the zstd frame ended; any further payload byte is an error */
    int frame_head_ok; /* the frame header was checked and handed to zstd */
    size_t frame_head_len;
    unsigned char frame_head[FRAME_HEAD_MAX];
    unsigned char header[CRYPT_HEADER_SIZE];
    struct stream_secrets *secrets;
    ZSTD_DCtx *zstd;
    EVP_MD_CTX *plain_hash;
    uint64_t plain_size;
    uint64_t max_plain;     /* the plaintext may not grow past this */
    unsigned char *record;  /* one chunk's ciphertext */
    unsigned char *payload; /* one chunk's payload */
    unsigned char *plain;   /* zstd output */
    size_t plain_cap;
};

static int emit_plain(struct opener *o, const unsigned char *buf, size_t len, struct cst_err *err)
{
    if (len == 0)
        return 0;
    /* Anyone with the public key can seal an object; one that inflates past what the
     * catalog recorded is stopped before it writes more than that. */
    if (len > o->max_plain - o->plain_size)
        return integrity_error(
            err, "object decompresses to more than the %" PRIu64 " bytes expected; stopped there",
            o->max_plain);
    if (sha256_update(o->plain_hash, buf, len, err) != 0)
        return -1;
    if (write_all(o->out_fd, buf, len, "restored plaintext", err) != 0)
        return -1;
    o->plain_size += len;
    return 0;
}

/*
 * The zstd frame header (RFC 8878, 3.1.1.1) of the first n payload bytes: 0 when it
 * is one a custodian writer makes, 1 when more bytes are needed to tell, or an
 * integrity error. libzstd would skip a skippable frame, load a dictionary by its id
 * and accept a frame without a checksum or with a window of up to 128 MiB; none of
 * those is ever written, so each is refused as not genuine.
 */
static int check_frame_head(const unsigned char *h, size_t n, struct cst_err *err)
{
    static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    unsigned fhd, single, fcs_bytes;
    uint64_t window = 0;

    if (memcmp(h, zstd_magic, n < 4 ? n : 4) != 0) {
        if (n >= 4 && (h[0] & 0xf0) == 0x50 && h[1] == 0x2a && h[2] == 0x4d && h[3] == 0x18)
            return integrity_error(err, "the payload starts with a skippable zstd frame");
        return integrity_error(err, "the payload is not a zstd frame (bad magic)");
    }
    if (n < 5)
        return 1;
    fhd = h[4];
    if (fhd & 0x08)
        return integrity_error(err, "the zstd frame header has its reserved bit set");
    if ((fhd & 0x04) == 0)
        return integrity_error(err, "the zstd frame has no content checksum");
    if (fhd & 0x03)
        return integrity_error(err, "the zstd frame needs a dictionary");
    single = fhd >> 5 & 1;
    fcs_bytes = (fhd >> 6) == 0 ? single : 1u << (fhd >> 6);
    if (n < 5 + !single + fcs_bytes)
        return 1;
    if (!single) {
        uint64_t base = (uint64_t)1 << (10 + (h[5] >> 3));

        window = base + base / 8 * (h[5] & 7);
    } else {
        for (unsigned i = 0; i < fcs_bytes; i++)
            window |= (uint64_t)h[5 + i] << (8 * i);
        if (fcs_bytes == 2)
            window += 256;
    }
    if (window > FRAME_WINDOW_MAX)
        return integrity_error(err,
                               "the zstd frame asks for a %" PRIu64 "-byte window (at most %u)",
                               window, FRAME_WINDOW_MAX);
    return 0;
}

static int decompress(struct opener *o, const unsigned char *buf, size_t len, struct cst_err *err)
{
    ZSTD_inBuffer in = {buf, len, 0};

    while (in.pos < in.size) {
        ZSTD_outBuffer out = {o->plain, o->plain_cap, 0};
        size_t rc;

        if (o->frame_done)
            return integrity_error(err, "payload continues after the end of its zstd frame");
        rc = ZSTD_decompressStream(o->zstd, &out, &in);
        if (ZSTD_isError(rc))
            return integrity_error(err, "payload is not a valid zstd frame: %s",
                                   ZSTD_getErrorName(rc));
        if (emit_plain(o, o->plain, out.pos, err) != 0)
            return -1;
        if (rc == 0)
            o->frame_done = 1;
    }
    return 0;
}

static int sink_payload(struct opener *o, const unsigned char *buf, size_t len, struct cst_err *err)
{
    if (!o->compressed)
        return emit_plain(o, buf, len, err);
    if (!o->frame_head_ok) {
        /* Held back (a chunk may carry a single byte) until the header can be judged. */
        size_t take = sizeof(o->frame_head) - o->frame_head_len;
        int rc;

        if (take > len)
            take = len;
        memcpy(o->frame_head + o->frame_head_len, buf, take);
        o->frame_head_len += take;
        buf += take;
        len -= take;
        if (o->frame_head_len == 0)
            return 0;
        rc = check_frame_head(o->frame_head, o->frame_head_len, err);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        o->frame_head_ok = 1;
        if (decompress(o, o->frame_head, o->frame_head_len, err) != 0)
            return -1;
    }
    return decompress(o, buf, len, err);
}

/* After the final chunk: drain what zstd still holds; the frame must end exactly here. */
static int finish_payload(struct opener *o, struct cst_err *err)
{
    if (o->compressed && !o->frame_head_ok)
        return integrity_error(err, "the payload ends before a whole zstd frame header");
    while (o->compressed && !o->frame_done) {
        ZSTD_inBuffer in = {o->payload, 0, 0};
        ZSTD_outBuffer out = {o->plain, o->plain_cap, 0};
        size_t rc = ZSTD_decompressStream(o->zstd, &out, &in);

        if (ZSTD_isError(rc))
            return integrity_error(err, "payload is not a valid zstd frame: %s",
                                   ZSTD_getErrorName(rc));
        if (emit_plain(o, o->plain, out.pos, err) != 0)
            return -1;
        if (rc == 0)
            o->frame_done = 1;
        else if (out.pos == 0)
            return integrity_error(err, "the zstd frame in the payload is truncated");
    }
    return 0;
}

/*
 * Check the header and recover the object key. A key id that differs from
 * ours is either another key's object or a damaged key id field; trying
 * the sealed key tells the two apart, so damage is never reported as a key
 * mismatch.
 */
static int open_header(struct opener *o, const unsigned char public_key[32],
                       const unsigned char secret_key[32], struct cst_err *err)
{
    unsigned char our_id[CRYPT_KEY_ID_SIZE];
    size_t got;
    int key_opens;

    if (read_full(o->in_fd, o->header, CRYPT_HEADER_SIZE, &got, err) != 0)
        return -1;
    if (got >= MAGIC_SIZE && memcmp(o->header, MAGIC, MAGIC_SIZE) != 0)
        return integrity_error(err, "not a custodian object (bad magic)");
    if (got < CRYPT_HEADER_SIZE)
        return integrity_error(err, "object is truncated: %zu of %d header bytes", got,
                               CRYPT_HEADER_SIZE);
    if (o->header[OFF_VERSION] != FORMAT_VERSION)
        return integrity_error(err, "unknown container version %u (this build reads version %d)",
                               o->header[OFF_VERSION], FORMAT_VERSION);
    if ((o->header[OFF_FLAGS] & ~FLAGS_KNOWN) != 0)
        return integrity_error(err, "unknown flags 0x%02x in the header", o->header[OFF_FLAGS]);
    o->compressed = (o->header[OFF_FLAGS] & FLAG_ZSTD) != 0;

    key_opens = crypto_box_seal_open(o->secrets->object_key, o->header + OFF_SEALED_KEY,
                                     SEALED_KEY_SIZE, public_key, secret_key) == 0;
    crypt_key_id(public_key, our_id);
    if (memcmp(our_id, o->header + OFF_KEY_ID, CRYPT_KEY_ID_SIZE) != 0) {
        char theirs_hex[2 * CRYPT_KEY_ID_SIZE + 1];
        char ours_hex[2 * CRYPT_KEY_ID_SIZE + 1];

        if (key_opens)
            return integrity_error(err, "the key id field of the header is damaged");
        hex_encode(o->header + OFF_KEY_ID, CRYPT_KEY_ID_SIZE, theirs_hex);
        hex_encode(our_id, CRYPT_KEY_ID_SIZE, ours_hex);
        return cst_err_set(err,
                           "object was sealed to key id %s, not to this secret key (key id %s)",
                           theirs_hex, ours_hex);
    }
    if (!key_opens)
        return integrity_error(err, "the sealed object key in the header does not open "
                                    "(header damaged)");
    if (crypto_secretstream_xchacha20poly1305_init_pull(
            &o->secrets->state, o->header + OFF_STREAM_HEADER, o->secrets->object_key) != 0)
        return integrity_error(err, "the secretstream header is invalid");
    sodium_memzero(o->secrets->object_key, sizeof(o->secrets->object_key));
    return 0;
}

static int open_chunks(struct opener *o, struct cst_err *err)
{
    uint64_t offset = CRYPT_HEADER_SIZE;
    uint64_t index;

    for (index = 0;; index++) {
        unsigned char length_bytes[LENGTH_SIZE];
        unsigned long long payload_len = 0;
        unsigned char tag = 0;
        uint32_t cipher_len;
        size_t got;

        if (read_full(o->in_fd, length_bytes, LENGTH_SIZE, &got, err) != 0)
            return -1;
        if (got == 0)
            return integrity_error(
                err, "object is truncated: it ends after chunk %" PRIu64 " without a final chunk",
                index);
        if (got < LENGTH_SIZE)
            return integrity_error(err, "object is truncated inside the length of chunk %" PRIu64,
                                   index);
        cipher_len = get_u32le(length_bytes);
        if (cipher_len < ABYTES || cipher_len > CHUNK_CIPHER_MAX)
            return integrity_error(err,
                                   "chunk %" PRIu64 " at offset %" PRIu64
                                   " has impossible length %" PRIu32 " (allowed %d..%d)",
                                   index, offset, cipher_len, ABYTES, CHUNK_CIPHER_MAX);
        if (read_full(o->in_fd, o->record, cipher_len, &got, err) != 0)
            return -1;
        if (got < cipher_len)
            return integrity_error(
                err, "object is truncated inside chunk %" PRIu64 " (%zu of %" PRIu32 " bytes)",
                index, got, cipher_len);
        if (crypto_secretstream_xchacha20poly1305_pull(&o->secrets->state, o->payload, &payload_len,
                                                       &tag, o->record, cipher_len, o->header,
                                                       CRYPT_HEADER_SIZE) != 0)
            return integrity_error(err,
                                   "chunk %" PRIu64 " at offset %" PRIu64
                                   " fails authentication (damaged or altered)",
                                   index, offset);
        if (tag != TAG_MESSAGE && tag != TAG_FINAL)
            return integrity_error(err, "chunk %" PRIu64 " carries unexpected tag %u", index, tag);
        if (sink_payload(o, o->payload, (size_t)payload_len, err) != 0)
            return -1;
        offset += LENGTH_SIZE + (uint64_t)cipher_len;
        if (tag == TAG_FINAL) {
            unsigned char extra;

            if (read_full(o->in_fd, &extra, 1, &got, err) != 0)
                return -1;
            if (got != 0)
                return integrity_error(err, "data follows the final chunk at offset %" PRIu64,
                                       offset);
            return finish_payload(o, err);
        }
    }
}

int crypt_open_fd(int in_fd, int out_fd, const unsigned char public_key[32],
                  const unsigned char secret_key[32], unsigned char plain_sha256_out[32],
                  uint64_t *plain_size_out, struct cst_err *err)
{
    return crypt_open_fd_limit(in_fd, out_fd, public_key, secret_key, UINT64_MAX, plain_sha256_out,
                               plain_size_out, err);
}

int crypt_open_fd_limit(int in_fd, int out_fd, const unsigned char public_key[32],
                        const unsigned char secret_key[32], uint64_t max_plain,
                        unsigned char plain_sha256_out[32], uint64_t *plain_size_out,
                        struct cst_err *err)
{
    struct opener o;
    unsigned char derived_public[crypto_box_PUBLICKEYBYTES];
    unsigned char digest[32];
    int rc = -1;

    memset(&o, 0, sizeof(o));
    o.in_fd = in_fd;
    o.out_fd = out_fd;
    o.max_plain = max_plain;
    if (sodium_ready(err) != 0)
        return -1;
    /* A mismatched pair would make every object look damaged; say what is really wrong. */
    if (crypto_scalarmult_base(derived_public, secret_key) != 0 ||
        sodium_memcmp(derived_public, public_key, sizeof(derived_public)) != 0) {
        unsigned char id[CRYPT_KEY_ID_SIZE];
        char id_hex[2 * CRYPT_KEY_ID_SIZE + 1];

        crypt_key_id(public_key, id);
        hex_encode(id, sizeof(id), id_hex);
        return cst_err_set(
            err, "the secret key does not belong to the public key given (key id %s)", id_hex);
    }
    o.secrets = sodium_malloc(sizeof(*o.secrets));
    o.record = malloc(CHUNK_CIPHER_MAX);
    o.payload = malloc(CHUNK_PAYLOAD_MAX);
    o.plain_hash = sha256_new(err);
    if (o.plain_hash == NULL)
        goto out;
    if (o.secrets == NULL || o.record == NULL || o.payload == NULL) {
        cst_err_set(err, "cannot allocate buffers to open an object: out of memory");
        goto out;
    }
    if (open_header(&o, public_key, secret_key, err) != 0)
        goto out;
    if (o.compressed) {
        o.zstd = ZSTD_createDCtx();
        o.plain_cap = ZSTD_DStreamOutSize();
        o.plain = malloc(o.plain_cap);
        /* Also libzstd's own limit, should a header ever get past check_frame_head. */
        if (o.zstd == NULL || o.plain == NULL ||
            ZSTD_isError(
                ZSTD_DCtx_setParameter(o.zstd, ZSTD_d_windowLogMax, FRAME_WINDOW_LOG_MAX))) {
            cst_err_set(err, "cannot allocate a zstd decompression context");
            goto out;
        }
    }
    if (open_chunks(&o, err) != 0)
        goto out;
    if (sha256_final(o.plain_hash, digest, err) != 0)
        goto out;
    if (plain_sha256_out != NULL)
        memcpy(plain_sha256_out, digest, 32);
    if (plain_size_out != NULL)
        *plain_size_out = o.plain_size;
    rc = 0;
out:
    if (o.secrets != NULL)
        sodium_free(o.secrets);
    ZSTD_freeDCtx(o.zstd);
    EVP_MD_CTX_free(o.plain_hash);
    free(o.record);
    free(o.payload);
    free(o.plain);
    return rc;
}
