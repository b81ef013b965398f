/*
 * stream_push.c - secretstream push with OpenSSL's ChaCha20 and Poly1305 (see
 * stream_push.h). The steps and their order are libsodium's
 * (crypto_secretstream/xchacha20poly1305); tests/unit/test_container.c checks the output
 * and the state against libsodium's push for every length up to a few blocks, chunk
 * sizes, tags and counter wrap-around.
 */
#include "shipper/stream_push.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/util.h"

/* Below this, libsodium's push is quicker than setting OpenSSL's contexts up (measured
 * here: libsodium's 1.29 us against 1.37 for 1 KiB, 2.06 against 1.79 for 1.5 KiB). */
#define OPENSSL_MIN 1536
#define MLEN_MAX (1u << 20)
#define COUNTER_SIZE 4
#define INONCE_SIZE 8
#define MAC_SIZE 16

struct stream_push {
    EVP_CIPHER *chacha;
    EVP_MAC *poly;
    EVP_CIPHER_CTX *cipher;
    EVP_MAC_CTX *mac;
    int usable; /* all four could be had (not, say, under an OpenSSL FIPS provider) */
};

static const unsigned char zeros[64];

struct stream_push *stream_push_new(void)
{
    struct stream_push *p = util_xcalloc(1, sizeof(*p));

    p->chacha = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
    p->poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    p->cipher = EVP_CIPHER_CTX_new();
    p->mac = p->poly ? EVP_MAC_CTX_new(p->poly) : NULL;
    p->usable = p->chacha && p->poly && p->cipher && p->mac;
    return p;
}

void stream_push_free(struct stream_push *p)
{
    if (p == NULL)
        return;
    EVP_MAC_CTX_free(p->mac); /* OpenSSL wipes what they held */
    EVP_CIPHER_CTX_free(p->cipher);
    EVP_MAC_free(p->poly);
    EVP_CIPHER_free(p->chacha);
    free(p);
}

void stream_push_wipe(struct stream_push *p)
{
    if (!p->usable)
        return;
    EVP_CIPHER_CTX_reset(p->cipher);
    (void)EVP_MAC_init(p->mac, zeros, 32, NULL);
}

static void store64_le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static int mac_update(struct stream_push *p, const unsigned char *buf, size_t len)
{
    return len == 0 || EVP_MAC_update(p->mac, buf, len) == 1 ? 0 : -1;
}

/* out <- m XOR ChaCha20(state key, state nonce, block counter 2). */
static int bulk_xor(struct stream_push *p, const crypto_secretstream_xchacha20poly1305_state *st,
                    unsigned char *out, const unsigned char *m, size_t mlen)
{
    /* OpenSSL's ChaCha20 IV: the 32-bit block counter (little-endian), then the nonce. */
    unsigned char iv[16] = {2, 0, 0, 0};
    int n = 0, fin = 0;

    memcpy(iv + 4, st->nonce, sizeof(st->nonce));
    if (EVP_EncryptInit_ex2(p->cipher, p->chacha, st->k, iv, NULL) != 1 ||
        EVP_EncryptUpdate(p->cipher, out, &n, m, (int)mlen) != 1 || (size_t)n != mlen ||
        EVP_EncryptFinal_ex(p->cipher, out + n, &fin) != 1 || fin != 0)
        return -1;
    return 0;
}

int stream_push(struct stream_push *p, crypto_secretstream_xchacha20poly1305_state *st,
                unsigned char *out, const unsigned char *m, size_t mlen, const unsigned char *ad,
                size_t adlen, unsigned char tag, struct cst_err *err)
{
    unsigned char block[64], len_le[8], mac[MAC_SIZE];
    unsigned char *c = out + 1;
    size_t maclen = 0;
    int rc = 0;

    if (mlen > MLEN_MAX)
        return cst_err_set(err, "cannot encrypt a chunk of %zu bytes", mlen);
    if (mlen < OPENSSL_MIN || !p->usable) {
        if (crypto_secretstream_xchacha20poly1305_push(st, out, NULL, m, mlen, ad, adlen, tag) != 0)
            return cst_err_set(err, "cannot encrypt chunk (crypto_secretstream push failed)");
        return 0;
    }
    /* The one-time Poly1305 key: the first 32 bytes of keystream block 0. */
    crypto_stream_chacha20_ietf(block, sizeof(block), st->nonce, st->k);
    if (EVP_MAC_init(p->mac, block, 32, NULL) != 1)
        rc = -1;
    sodium_memzero(block, sizeof(block));
    /* The additional data, padded to 16; the tag in a block of its own (block 1). */
    if (rc == 0)
        rc = mac_update(p, ad, adlen);
    if (rc == 0)
        rc = mac_update(p, zeros, (0x10 - adlen) & 0xf);
    memset(block, 0, sizeof(block));
    block[0] = tag;
    crypto_stream_chacha20_ietf_xor_ic(block, block, sizeof(block), st->nonce, 1, st->k);
    if (rc == 0)
        rc = mac_update(p, block, sizeof(block));
    out[0] = block[0];
    /* The message from block 2 on: the part that costs, and OpenSSL's. */
    if (rc == 0)
        rc = bulk_xor(p, st, c, m, mlen);
    if (rc == 0)
        rc = mac_update(p, c, mlen);
    /* libsodium's padding after the message, exactly as it computes it. */
    if (rc == 0)
        rc = mac_update(p, zeros, (0x10 - sizeof(block) + mlen) & 0xf);
    store64_le(len_le, (uint64_t)adlen);
    if (rc == 0)
        rc = mac_update(p, len_le, sizeof(len_le));
    store64_le(len_le, (uint64_t)(sizeof(block) + mlen));
    if (rc == 0)
        rc = mac_update(p, len_le, sizeof(len_le));
    if (rc == 0 && (EVP_MAC_final(p->mac, mac, &maclen, sizeof(mac)) != 1 || maclen != MAC_SIZE))
        rc = -1;
    if (rc != 0) {
        sodium_memzero(block, sizeof(block));
        return cst_err_set(err, "cannot encrypt chunk (OpenSSL ChaCha20-Poly1305 failed)");
    }
    memcpy(c + mlen, mac, MAC_SIZE);
    /* The state moves on as libsodium's does: the MAC into the inner nonce, the counter
     * up by one, a new key when asked or when the counter wraps. */
    for (int i = 0; i < INONCE_SIZE; i++)
        st->nonce[COUNTER_SIZE + i] ^= mac[i];
    sodium_increment(st->nonce, COUNTER_SIZE);
    if ((tag & crypto_secretstream_xchacha20poly1305_TAG_REKEY) != 0 ||
        sodium_is_zero(st->nonce, COUNTER_SIZE))
        crypto_secretstream_xchacha20poly1305_rekey(st);
    sodium_memzero(block, sizeof(block));
    sodium_memzero(mac, sizeof(mac));
    return 0;
}
