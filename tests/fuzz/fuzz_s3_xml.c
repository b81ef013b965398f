/*
 * fuzz_s3_xml.c - libFuzzer harness: any body an S3 server (or something
 * posing as one) sends, given to the reply scanners (shipper/s3_xml.c):
 * error documents, ListObjectsV2 pages, single elements and entity
 * decoding end in a result or "not that", never a crash, a leak or a read
 * past the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shipper/s3_xml.h"

static int each_key(void *arg, const char *key, uint64_t size)
{
    (void)size;
    if (key == NULL)
        abort();
    return ++*(int *)arg > 1000; /* a listing may also be stopped early */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *xml = malloc(size ? size : 1), out[64];
    struct s3_xml_error e;
    struct s3_list_page page;
    int keys = 0;
    long n;

    if (xml == NULL)
        abort();
    memcpy(xml, data, size);
    s3_xml_error(xml, size, &e);
    if (strlen(e.code) >= sizeof(e.code) || strlen(e.message) >= sizeof(e.message))
        abort();
    memset(&page, 0, sizeof(page));
    s3_xml_list(xml, size, each_key, &keys, &page);
    s3_xml_text(xml, size, "UploadId", out, sizeof(out));
    s3_xml_text(xml, size, "ETag", out, 1);
    n = s3_xml_decode(xml, size, out, sizeof(out));
    if (n >= (long)sizeof(out) || strlen(out) >= sizeof(out))
        abort();
    free(xml);
    return 0;
}
