/*
 * s3_xml.h - the few S3 reply bodies custodian reads, and the two it writes.
 *
 * S3 answers in small, flat, machine-written XML: <Error><Code>,
 * ListObjectsV2's <Contents>, InitiateMultipartUpload's <UploadId>. A
 * tolerant scanner that finds an element by exact name and decodes the five
 * entities and numeric references is all that is needed; there is no schema
 * and no nesting of same-named elements to care about. Everything here is
 * pure (no I/O), so tests/unit/test_s3.c feeds it recorded replies.
 */
#ifndef CST_S3_XML_H
#define CST_S3_XML_H

#include <stddef.h>
#include <stdint.h>

/* Decode XML text (entities, &#N;, &#xN;) into out; always NUL-terminates.
 * Returns the decoded length, or -1 if out was too small (out then holds a prefix). */
long s3_xml_decode(const char *in, size_t inlen, char *out, size_t outlen);

/* Next element named exactly tag at or after *pos: its content in [*inner, *inner+*inner_len),
 * *pos moved past its end. Returns 1 if found, 0 if not. <tag/> is found with length 0. */
int s3_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, const char **inner,
                size_t *inner_len);

/* Decoded text of the first element named tag. 0, or -1 if absent (out is then ""). */
int s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t outlen);

struct s3_xml_error {
    char code[128];    /* "SignatureDoesNotMatch"; "" when the body held no <Error> */
    char message[512]; /* "" when absent */
};

/* S3's error document. 0 if the body is an <Error>, -1 otherwise (e is then emptied). */
int s3_xml_error(const char *xml, size_t len, struct s3_xml_error *e);

struct s3_list_page {
    int truncated;         /* <IsTruncated>true */
    char next_token[1024]; /* <NextContinuationToken>, decoded; "" when none */
    size_t keys;           /* <Contents> entries seen */
};

/* A ListObjectsV2 page: cb for each <Contents> Key/Size, in order.
 * Returns 0, 1 when cb returned non-zero (stopped), -1 when this is no listing. */
int s3_xml_list(const char *xml, size_t len, int (*cb)(void *arg, const char *key, uint64_t size),
                void *arg, struct s3_list_page *page);

struct s3_uploads_page {
    int truncated;
    char next_key[1024];       /* <NextKeyMarker>, decoded */
    char next_upload_id[1024]; /* <NextUploadIdMarker>, decoded */
};

/* A ListMultipartUploads page: cb for each <Upload> Key, UploadId, Initiated.
 * Returns 0, 1 when cb stopped, -1 when this is no such listing. */
int s3_xml_uploads(const char *xml, size_t len,
                   int (*cb)(void *arg, const char *key, const char *upload_id,
                             const char *initiated),
                   void *arg, struct s3_uploads_page *page);

/* "2026-11-20T19:00:00.000Z" (S3's timestamps; RGW writes nine digits after the second) as
 * Unix milliseconds; -1 if not one. */
int64_t s3_xml_time_ms(const char *iso);
/* Unix milliseconds as "2033-11-24T00:00:00Z", the form S3 takes in lock headers and
 * bodies (whole seconds: the fraction is dropped). out holds at least 32 bytes. */
void s3_xml_time_iso(int64_t ms, char *out, size_t outlen);

/* The PutObjectRetention request body: mode (GOVERNANCE, COMPLIANCE) until ms (malloc'd). */
char *s3_xml_retention_body(const char *mode, int64_t until_ms);

/* The CompleteMultipartUpload request body for parts 1..n with these ETags (malloc'd). */
char *s3_xml_complete_body(char *const *etags, size_t n);

#endif
