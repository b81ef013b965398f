/*
 * test_s3.c - the pure parts of the S3 destination: S3's XML replies (errors,
 * ListObjectsV2 pages, multipart start and end, as AWS and Ceph RGW send
 * them), the CompleteMultipartUpload and PutObjectRetention bodies and the
 * lock dates, endpoint parsing, URLs in both
 * addressing styles in the exact form curl's SigV4 signs, the
 * classification and wording of failures, and the credentials files with
 * their mode check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "shipper/s3_proto.h"
#include "shipper/s3_xml.h"

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

/* ---- XML ---- */

static void test_xml_decode(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(s3_xml_decode("a&amp;b&lt;c&gt;d&quot;e&apos;f", 31, out, sizeof(out)), 11);
    assert_string_equal(out, "a&b<c>d\"e'f");
    assert_true(s3_xml_decode("&#65;&#x42;&#xe9;&#8364;", 24, out, sizeof(out)) > 0);
    assert_string_equal(out, "AB\xc3\xa9\xe2\x82\xac");
    /* Unknown or broken entities stay as they are. */
    s3_xml_decode("&nbsp; &#; &#xZZ; &", 20, out, sizeof(out));
    assert_string_equal(out, "&nbsp; &#; &#xZZ; &");
    /* Too small: -1 and a terminated prefix. */
    assert_int_equal(s3_xml_decode("abcdef", 6, out, 4), -1);
    assert_string_equal(out, "abc");
}

static void test_xml_error_aws(void **state)
{
    const char *body =
        XML_DECL "<Error>\n  <Code>SignatureDoesNotMatch</Code>\n"
                 "  <Message>The request signature we calculated does not match the signature you "
                 "provided. Check your key &amp; signing method.</Message>\n"
                 "  <RequestId>4442587FB7D0A2F9</RequestId>\n</Error>";
    struct s3_xml_error e;

    (void)state;
    assert_int_equal(s3_xml_error(body, strlen(body), &e), 0);
    assert_string_equal(e.code, "SignatureDoesNotMatch");
    assert_non_null(strstr(e.message, "key & signing"));
}

static void test_xml_error_rgw(void **state)
{
    /* As Ceph RGW 16 sends it: one line, no Message. */
    const char *body = XML_DECL "<Error><Code>NoSuchBucket</Code><BucketName>nob</BucketName>"
                                "<RequestId>tx0000-0065</RequestId><HostId>10f4-default-default"
                                "</HostId></Error>";
    struct s3_xml_error e;

    (void)state;
    assert_int_equal(s3_xml_error(body, strlen(body), &e), 0);
    assert_string_equal(e.code, "NoSuchBucket");
    assert_string_equal(e.message, "");
}

static void test_xml_error_absent(void **state)
{
    struct s3_xml_error e;
    const char *ok = XML_DECL "<CompleteMultipartUploadResult><ETag></ETag></"
                              "CompleteMultipartUploadResult>";
    const char *cut = "<Error><Code>Inter";

    (void)state;
    assert_int_equal(s3_xml_error(ok, strlen(ok), &e), -1);
    assert_string_equal(e.code, "");
    assert_int_equal(s3_xml_error(NULL, 0, &e), -1);
    assert_int_equal(s3_xml_error("", 0, &e), -1);
    /* A body cut short has no complete <Error>. */
    assert_int_equal(s3_xml_error(cut, strlen(cut), &e), -1);
    /* <ErrorDocument> is not <Error>. */
    const char *other = "<ErrorDocument><Code>x</Code></ErrorDocument>";

    assert_int_equal(s3_xml_error(other, strlen(other), &e), -1);
}

static void test_xml_exact_names(void **state)
{
    const char *x = "<R><KeyCount>2</KeyCount><ContinuationToken>old</ContinuationToken>"
                    "<Key attr=\"1\">k</Key><NextContinuationToken>new</NextContinuationToken>"
                    "<Empty/></R>";
    char out[32];

    (void)state;
    assert_int_equal(s3_xml_text(x, strlen(x), "Key", out, sizeof(out)), 0);
    assert_string_equal(out, "k");
    assert_int_equal(s3_xml_text(x, strlen(x), "ContinuationToken", out, sizeof(out)), 0);
    assert_string_equal(out, "old");
    assert_int_equal(s3_xml_text(x, strlen(x), "NextContinuationToken", out, sizeof(out)), 0);
    assert_string_equal(out, "new");
    assert_int_equal(s3_xml_text(x, strlen(x), "Empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(s3_xml_text(x, strlen(x), "Missing", out, sizeof(out)), -1);
    assert_string_equal(out, "");
}

struct listed {
    char keys[8][64];
    uint64_t sizes[8];
    size_t n, stop_after;
};

static int collect(void *arg, const char *key, uint64_t size)
{
    struct listed *l = arg;

    snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
    l->sizes[l->n++] = size;
    return l->stop_after && l->n >= l->stop_after;
}

static const char *list_page =
    XML_DECL "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
             "<Name>tbot</Name><Prefix>objects/</Prefix><KeyCount>3</KeyCount>"
             "<MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>"
             "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
             "NextContinuationToken>"
             "<Contents><Key>objects/ab/ab01</Key><LastModified>2026-11-20T19:00:00.000Z"
             "</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>"
             "<Size>48213</Size><StorageClass>STANDARD</StorageClass></Contents>"
             "<Contents>\n  <Key>objects/ab/a&amp;b c</Key>\n  <Size>0</Size>\n</Contents>"
             "<Contents><Key>objects/cd/big</Key><Size>5368709120</Size><Owner><ID>test</ID>"
             "</Owner></Contents></ListBucketResult>";

static void test_xml_list(void **state)
{
    struct listed l = {0};
    struct s3_list_page page;

    (void)state;
    assert_int_equal(s3_xml_list(list_page, strlen(list_page), collect, &l, &page), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(page.keys, 3);
    assert_string_equal(l.keys[0], "objects/ab/ab01");
    assert_int_equal(l.sizes[0], 48213);
    assert_string_equal(l.keys[1], "objects/ab/a&b c");
    assert_int_equal(l.sizes[1], 0);
    assert_int_equal(l.sizes[2], 5368709120ull);
    assert_true(page.truncated);
    assert_string_equal(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

    /* The callback stops the listing. */
    memset(&l, 0, sizeof(l));
    l.stop_after = 2;
    assert_int_equal(s3_xml_list(list_page, strlen(list_page), collect, &l, &page), 1);
    assert_int_equal(l.n, 2);
}

static void test_xml_list_last_and_empty(void **state)
{
    const char *last = XML_DECL "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                "<Contents><Key>x</Key><Size>1</Size></Contents>"
                                "</ListBucketResult>";
    const char *empty = XML_DECL "<ListBucketResult xmlns=\"x\"><Name>b</Name><Prefix>none/"
                                 "</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
                                 "<IsTruncated>false</IsTruncated></ListBucketResult>";
    struct listed l = {0};
    struct s3_list_page page;

    (void)state;
    assert_int_equal(s3_xml_list(last, strlen(last), collect, &l, &page), 0);
    assert_int_equal(l.n, 1);
    assert_false(page.truncated);
    assert_string_equal(page.next_token, "");
    memset(&l, 0, sizeof(l));
    assert_int_equal(s3_xml_list(empty, strlen(empty), collect, &l, &page), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(page.keys, 0);
}

static void test_xml_list_malformed(void **state)
{
    struct listed l = {0};
    struct s3_list_page page;
    const char *err = XML_DECL "<Error><Code>AccessDenied</Code></Error>";
    const char *no_token = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                           "<Contents><Key>x</Key><Size>1</Size></Contents></ListBucketResult>";
    const char *bad_size = "<ListBucketResult><Contents><Key>x</Key><Size>12a</Size>"
                           "</Contents></ListBucketResult>";
    const char *no_key = "<ListBucketResult><Contents><Size>1</Size></Contents>"
                         "</ListBucketResult>";
    const char *cut = "<ListBucketResult><Contents><Key>x</Key><Size>1</Size></Cont";

    (void)state;
    assert_int_equal(s3_xml_list(err, strlen(err), collect, &l, &page), -1);
    /* Truncated without a token would end the listing silently: refused. */
    assert_int_equal(s3_xml_list(no_token, strlen(no_token), collect, &l, &page), -1);
    assert_int_equal(s3_xml_list(bad_size, strlen(bad_size), collect, &l, &page), -1);
    assert_int_equal(s3_xml_list(no_key, strlen(no_key), collect, &l, &page), -1);
    assert_int_equal(s3_xml_list(cut, strlen(cut), collect, &l, &page), -1);
    assert_int_equal(s3_xml_list(NULL, 0, collect, &l, &page), -1);
}

static void test_xml_multipart(void **state)
{
    /* RGW's InitiateMultipartUploadResult and its CompleteMultipartUploadResult (empty ETag). */
    const char *init = XML_DECL "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/"
                                "doc/2006-03-01/\"><Tenant></Tenant><Bucket>tbot</Bucket>"
                                "<Key>mp/big</Key><UploadId>2~Xk3_hP1Ab-cD2eF3gH4iJ5kL6mN7oP"
                                "</UploadId></InitiateMultipartUploadResult>";
    const char *done = XML_DECL "<CompleteMultipartUploadResult xmlns=\"x\"><Location>"
                                "127.0.0.1/tbot/mp/big</Location><Bucket>tbot</Bucket>"
                                "<Key>mp/big</Key><ETag></ETag></CompleteMultipartUploadResult>";
    /* AWS may answer 200 and still fail the Complete: the body is then an <Error>. */
    const char *late = XML_DECL "\n\n<Error><Code>InternalError</Code><Message>We encountered "
                                "an internal error. Please try again.</Message></Error>";
    char id[128];
    struct s3_xml_error e;

    (void)state;
    assert_int_equal(s3_xml_text(init, strlen(init), "UploadId", id, sizeof(id)), 0);
    assert_string_equal(id, "2~Xk3_hP1Ab-cD2eF3gH4iJ5kL6mN7oP");
    assert_int_equal(s3_xml_error(done, strlen(done), &e), -1);
    assert_int_equal(s3_xml_error(late, strlen(late), &e), 0);
    assert_string_equal(e.code, "InternalError");
}

static void test_xml_complete_body(void **state)
{
    char *etags[] = {"\"a54357aff0632cce46d942af68356b38\"", "\"0c78aef83f66abc1fa1e8477f296d394\"",
                     "weird<&>"};
    char *body = s3_xml_complete_body(etags, 3);

    (void)state;
    assert_string_equal(body, "<CompleteMultipartUpload>"
                              "<Part><PartNumber>1</PartNumber>"
                              "<ETag>\"a54357aff0632cce46d942af68356b38\"</ETag></Part>"
                              "<Part><PartNumber>2</PartNumber>"
                              "<ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag></Part>"
                              "<Part><PartNumber>3</PartNumber>"
                              "<ETag>weird&lt;&amp;&gt;</ETag></Part>"
                              "</CompleteMultipartUpload>");
    free(body);
}

/* Object Lock: the retain-until date as sent (whole seconds) and as read back on HEAD. */
static void test_retention(void **state)
{
    char iso[32];
    char *body;

    (void)state;
    /* 2033-11-24T00:00:00Z; a fraction of a second is dropped, never rounded up */
    s3_xml_time_iso(2016403200000LL + 999, iso, sizeof(iso));
    assert_string_equal(iso, "2033-11-24T00:00:00Z");
    s3_xml_time_iso(0, iso, sizeof(iso));
    assert_string_equal(iso, "1970-01-01T00:00:00Z");
    body = s3_xml_retention_body("COMPLIANCE", 2016403200000LL);
    assert_string_equal(body, "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                              "<Mode>COMPLIANCE</Mode>"
                              "<RetainUntilDate>2033-11-24T00:00:00Z</RetainUntilDate>"
                              "</Retention>");
    free(body);
    /* what HEAD shows: RGW with nanoseconds, AWS with milliseconds */
    assert_int_equal(s3_xml_time_ms("2033-11-24T00:00:00.000000000Z"), 2016403200000LL);
    assert_int_equal(s3_xml_time_ms("2033-11-24T00:00:00.000Z"), 2016403200000LL);
    assert_int_equal(s3_xml_time_ms("2033-11-24T00:00:00.999999999Z"), 2016403200999LL);
    /* a date and what it becomes agree both ways */
    assert_int_equal(s3_xml_time_ms(iso), 0);
    s3_xml_time_iso(s3_xml_time_ms("2040-02-29T23:59:59Z"), iso, sizeof(iso));
    assert_string_equal(iso, "2040-02-29T23:59:59Z");
}

/* ---- endpoints and URLs ---- */

static void test_endpoint_parse(void **state)
{
    struct s3_endpoint ep;
    struct cst_err err;

    (void)state;
    assert_int_equal(s3_endpoint_parse("https://s3.example.com", &ep, &err), 0);
    assert_true(ep.https);
    assert_string_equal(ep.host, "s3.example.com");
    assert_string_equal(ep.hostname, "s3.example.com");
    assert_int_equal(s3_endpoint_parse("https://127.0.0.1:7443/", &ep, &err), 0);
    assert_string_equal(ep.host, "127.0.0.1:7443");
    assert_string_equal(ep.hostname, "127.0.0.1");
    assert_int_equal(s3_endpoint_parse("http://127.0.0.1:7480", &ep, &err), 0);
    assert_false(ep.https);
    assert_int_equal(s3_endpoint_parse("http://localhost:7480", &ep, &err), 0);
    assert_int_equal(s3_endpoint_parse("http://[::1]:7480", &ep, &err), 0);
    assert_string_equal(ep.host, "[::1]:7480");
    assert_string_equal(ep.hostname, "::1");
    assert_int_equal(s3_endpoint_parse("https://[2001:db8::1]", &ep, &err), 0);

    assert_int_equal(s3_endpoint_parse("http://s3.example.com", &ep, &err), -1);
    assert_non_null(strstr(err.msg, "only for a loopback"));
    assert_int_equal(s3_endpoint_parse("http://10.0.0.1:80", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("ftp://x", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("s3.example.com", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3.example.com/bucket", &ep, &err), -1);
    assert_non_null(strstr(err.msg, "without a path"));
    assert_int_equal(s3_endpoint_parse("https://user:pw@s3.example.com", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3.example.com:0", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3.example.com:70000", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3.example.com:", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3 example.com", &ep, &err), -1);
    assert_int_equal(s3_endpoint_parse("https://s3.example.com?x=1", &ep, &err), -1);
}

static void test_uri_encode(void **state)
{
    char *e;

    (void)state;
    e = s3_uri_encode("objects/ab/abcdef0123", 1);
    assert_string_equal(e, "objects/ab/abcdef0123");
    free(e);
    e = s3_uri_encode("a b+c=d&e/f~g_h-i.j*k%\xc3\xa9", 1);
    assert_string_equal(e, "a%20b%2Bc%3Dd%26e/f~g_h-i.j%2Ak%25%C3%A9");
    free(e);
    e = s3_uri_encode("b/", 0);
    assert_string_equal(e, "b%2F");
    free(e);
}

static void test_query(void **state)
{
    struct s3_qparam list[] = {
        {"prefix", "objects/ab/"},
        {"list-type", "2"},
        {"continuation-token", "1ueG+c/x=="},
    };
    struct s3_qparam part[] = {{"uploadId", "2~abc_D"}, {"partNumber", "10"}};
    struct s3_qparam bare[] = {{"uploads", NULL}};
    struct s3_qparam two_bare[] = {{"versions", NULL}, {"prefix", "b/"}};
    char *q;

    (void)state;
    q = s3_query(list, 3);
    assert_string_equal(q,
                        "continuation-token=1ueG%2Bc%2Fx%3D%3D&list-type=2&prefix=objects%2Fab%2F");
    free(q);
    q = s3_query(part, 2);
    assert_string_equal(q, "partNumber=10&uploadId=2~abc_D");
    free(q);
    q = s3_query(bare, 1);
    assert_string_equal(q, "uploads=");
    free(q);
    q = s3_query(two_bare, 2);
    assert_string_equal(q, "prefix=b%2F&versions=");
    free(q);
    q = s3_query(NULL, 0);
    assert_string_equal(q, "");
    free(q);
}

static void test_url_styles(void **state)
{
    struct s3_endpoint ep;
    struct cst_err err;
    char *u;

    (void)state;
    assert_int_equal(s3_endpoint_parse("https://127.0.0.1:7443", &ep, &err), 0);
    u = s3_url(&ep, "tbot", 1, "objects/ab/ab01", NULL);
    assert_string_equal(u, "https://127.0.0.1:7443/tbot/objects/ab/ab01");
    free(u);
    u = s3_url(&ep, "tbot", 1, "mp/big", "partNumber=1&uploadId=2~x");
    assert_string_equal(u, "https://127.0.0.1:7443/tbot/mp/big?partNumber=1&uploadId=2~x");
    free(u);
    u = s3_url(&ep, "tbot", 1, NULL, "list-type=2&prefix=a%2F");
    assert_string_equal(u, "https://127.0.0.1:7443/tbot?list-type=2&prefix=a%2F");
    free(u);
    u = s3_url(&ep, "tbot", 1, NULL, NULL);
    assert_string_equal(u, "https://127.0.0.1:7443/tbot");
    free(u);
    u = s3_url(&ep, "tbot", 1, "a b/c+d", "");
    assert_string_equal(u, "https://127.0.0.1:7443/tbot/a%20b/c%2Bd");
    free(u);

    assert_int_equal(s3_endpoint_parse("https://s3.eu-central-1.amazonaws.com", &ep, &err), 0);
    u = s3_url(&ep, "tbot", 0, "objects/ab/ab01", NULL);
    assert_string_equal(u, "https://tbot.s3.eu-central-1.amazonaws.com/objects/ab/ab01");
    free(u);
    u = s3_url(&ep, "tbot", 0, NULL, "location=");
    assert_string_equal(u, "https://tbot.s3.eu-central-1.amazonaws.com/?location=");
    free(u);
    u = s3_url(&ep, "tbot", 0, "k", "uploads=");
    assert_string_equal(u, "https://tbot.s3.eu-central-1.amazonaws.com/k?uploads=");
    free(u);
}

/* ---- failures ---- */

static const struct s3_names names = {
    .dest = "offsite",
    .host = "127.0.0.1:7643",
    .bucket = "tbot",
    .region = "us-east-1",
    .access_key_file = "/etc/custodian/s3.access",
    .secret_key_file = "/etc/custodian/s3.secret",
    .ca_file = NULL,
    .hot_class = NULL,
};

struct explain_case {
    int curl_code;
    const char *detail;
    long status;
    const char *code, *message;
    enum dest_error kind;
    const char *want1, *want2;
};

static void test_explain_table(void **state)
{
    static const struct explain_case cases[] = {
        /* transport */
        {CURLE_COULDNT_CONNECT, "Failed to connect to 127.0.0.1 port 7643: Connection refused", 0,
         NULL, NULL, DEST_ERR_TRANSIENT, "cannot connect to 127.0.0.1:7643", "Connection refused"},
        {CURLE_OPERATION_TIMEDOUT, "Operation too slow", 0, NULL, NULL, DEST_ERR_TRANSIENT,
         "did not answer in time", NULL},
        {CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: nope", 0, NULL, NULL,
         DEST_ERR_TRANSIENT, "cannot resolve", "check endpoint"},
        {CURLE_GOT_NOTHING, "", 0, NULL, NULL, DEST_ERR_TRANSIENT, "connection", "broke"},
        {CURLE_PARTIAL_FILE, "transfer closed with 10 bytes remaining to read", 0, NULL, NULL,
         DEST_ERR_TRANSIENT, "broke", "10 bytes remaining"},
        {CURLE_RECV_ERROR, "Connection reset by peer", 0, NULL, NULL, DEST_ERR_TRANSIENT, "broke",
         NULL},
        {CURLE_SEND_ERROR, "Broken pipe", 0, NULL, NULL, DEST_ERR_TRANSIENT, "broke", NULL},
        {CURLE_PEER_FAILED_VERIFICATION,
         "SSL certificate problem: unable to get local issuer certificate", 0, NULL, NULL,
         DEST_ERR_CONFIG, "TLS certificate of 127.0.0.1:7643 not trusted", "set ca_file"},
        {CURLE_PEER_FAILED_VERIFICATION,
         "SSL: no alternative certificate subject name matches target host name 'x'", 0, NULL, NULL,
         DEST_ERR_CONFIG, "does not match that name", "check endpoint and path_style"},
        {CURLE_PEER_FAILED_VERIFICATION, "SSL certificate problem: certificate has expired", 0,
         NULL, NULL, DEST_ERR_CONFIG, "validity", "renew"},
        {CURLE_SSL_CACERT_BADFILE, "error setting certificate file: /nope.pem", 0, NULL, NULL,
         DEST_ERR_CONFIG, "cannot load ca_file", "PEM"},
        {CURLE_SSL_CONNECT_ERROR, "SSL certificate problem: self-signed certificate", 0, NULL, NULL,
         DEST_ERR_CONFIG, "not trusted", "set ca_file"},
        {CURLE_SSL_CONNECT_ERROR, "error:0A00010B:SSL routines::wrong version number", 0, NULL,
         NULL, DEST_ERR_CONFIG, "plain http", "check endpoint"},
        {CURLE_SSL_CONNECT_ERROR, "OpenSSL SSL_connect: Connection reset by peer", 0, NULL, NULL,
         DEST_ERR_TRANSIENT, "TLS handshake with 127.0.0.1:7643 failed", NULL},
        {CURLE_READ_ERROR, "reading the spool file: Input/output error", 0, NULL, NULL,
         DEST_ERR_SOURCE, "cannot read the local file", "Input/output"},
        {CURLE_ABORTED_BY_CALLBACK, "the spool file got shorter while being sent", 0, NULL, NULL,
         DEST_ERR_SOURCE, "got shorter", NULL},
        {CURLE_UNSUPPORTED_PROTOCOL, "Protocol \"ftp\" not supported", 0, NULL, NULL,
         DEST_ERR_CONFIG, "not usable", NULL},
        {CURLE_OUT_OF_MEMORY, NULL, 0, NULL, NULL, DEST_ERR_TRANSIENT, "curl error 27", NULL},
        /* HTTP */
        {0, NULL, 403, "SignatureDoesNotMatch", "", DEST_ERR_CONFIG,
         "S3 refused the credentials (403 SignatureDoesNotMatch)",
         "check secret_key_file /etc/custodian/s3.secret"},
        {0, NULL, 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist",
         DEST_ERR_CONFIG, "(403 InvalidAccessKeyId)",
         "check access_key_file /etc/custodian/s3.access"},
        {0, NULL, 403, "AccessDenied", "Access Denied", DEST_ERR_CONFIG,
         "denied access to bucket tbot (403 AccessDenied: Access Denied)", "write access"},
        {0, NULL, 403, "RequestTimeTooSkewed", NULL, DEST_ERR_CONFIG, "clock", "NTP"},
        {0, NULL, 403, NULL, NULL, DEST_ERR_CONFIG, "(403, no detail in the reply)",
         "secret_key_file /etc/custodian/s3.secret"},
        {0, NULL, 401, "Unauthorized", NULL, DEST_ERR_CONFIG, "401 Unauthorized",
         "access_key_file"},
        {0, NULL, 404, "NoSuchBucket", "The specified bucket does not exist", DEST_ERR_CONFIG,
         "bucket tbot does not exist at 127.0.0.1:7643 (404 NoSuchBucket)", "create it"},
        {0, NULL, 404, "NoSuchKey", NULL, DEST_ERR_TRANSIENT, "not found (404 NoSuchKey)", NULL},
        {0, NULL, 404, "NoSuchUpload", NULL, DEST_ERR_TRANSIENT, "multipart upload is gone", NULL},
        {0, NULL, 404, NULL, NULL, DEST_ERR_TRANSIENT, "not found (404)", NULL},
        {0, NULL, 400, "InvalidStorageClass", "The storage class you specified is not valid",
         DEST_ERR_CONFIG, "400 InvalidStorageClass: The storage class", "check hot_class"},
        {0, NULL, 400, "XAmzContentSHA256Mismatch", NULL, DEST_ERR_SOURCE,
         "differs from its SHA-256", "changed since it was sealed"},
        {0, NULL, 400, "BadDigest", NULL, DEST_ERR_SOURCE, "400 BadDigest", NULL},
        {0, NULL, 400, "RequestTimeout", NULL, DEST_ERR_TRANSIENT, "slow request", NULL},
        {0, NULL, 400, "AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong",
         DEST_ERR_CONFIG, "check region (now us-east-1)", NULL},
        {0, NULL, 400, "EntityTooSmall", NULL, DEST_ERR_CONFIG,
         "rejected the request (400 EntityTooSmall)", NULL},
        {0, NULL, 400, "InvalidArgument", "bad", DEST_ERR_CONFIG, "400 InvalidArgument: bad", NULL},
        {0, NULL, 301, "PermanentRedirect", "use the endpoint x", DEST_ERR_CONFIG,
         "another endpoint or region", "path_style"},
        {0, NULL, 500, "InternalError", "We encountered an internal error", DEST_ERR_TRANSIENT,
         "busy or failing (500 InternalError: We encountered", NULL},
        {0, NULL, 503, "SlowDown", NULL, DEST_ERR_TRANSIENT, "503 SlowDown", NULL},
        {0, NULL, 502, NULL, NULL, DEST_ERR_TRANSIENT, "(502)", NULL},
        {0, NULL, 429, NULL, NULL, DEST_ERR_TRANSIENT, "(429)", NULL},
        {0, NULL, 408, NULL, NULL, DEST_ERR_TRANSIENT, "(408)", NULL},
        {0, NULL, 409, "OperationAborted", NULL, DEST_ERR_TRANSIENT, "409 OperationAborted", NULL},
        {0, NULL, 411, "MissingContentLength", NULL, DEST_ERR_CONFIG, "411 MissingContentLength",
         NULL},
        {0, NULL, 405, "MethodNotAllowed", NULL, DEST_ERR_CONFIG, "405", NULL},
    };
    char out[CST_ERR_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct explain_case *c = &cases[i];
        struct s3_outcome o = {c->curl_code, c->detail, c->status, c->code, c->message};
        enum dest_error kind =
            s3_explain(&names, "cannot upload objects/ab/ab01", &o, out, sizeof(out));

        if (kind != c->kind || strstr(out, c->want1) == NULL ||
            (c->want2 && strstr(out, c->want2) == NULL))
            fail_msg("case %zu (curl %d, HTTP %ld %s): kind %d, want %d; got \"%s\"", i,
                     c->curl_code, c->status, c->code ? c->code : "", kind, c->kind, out);
        assert_true(strncmp(out, "destination offsite: cannot upload objects/ab/ab01: ", 52) == 0);
    }
}

static void test_explain_with_config(void **state)
{
    struct s3_names n = names;
    struct s3_outcome tls = {CURLE_PEER_FAILED_VERIFICATION,
                             "SSL certificate problem: unable to get local issuer certificate", 0,
                             NULL, NULL};
    struct s3_outcome arg = {0, NULL, 400, "InvalidArgument", "Invalid storage class"};
    char out[CST_ERR_SIZE];

    (void)state;
    n.ca_file = "/etc/custodian/ca.pem";
    n.hot_class = "GLACIER_IR";
    assert_int_equal(s3_explain(&n, "probe", &tls, out, sizeof(out)), DEST_ERR_CONFIG);
    assert_non_null(strstr(out, "ca_file /etc/custodian/ca.pem does not hold the CA"));
    /* RGW says InvalidArgument for an unknown class: with hot_class set, point at it. */
    assert_int_equal(s3_explain(&n, "probe", &arg, out, sizeof(out)), DEST_ERR_CONFIG);
    assert_non_null(strstr(out, "check hot_class GLACIER_IR"));
    /* Never the secret, only its file. */
    assert_null(strstr(out, "SKTEST"));
}

/* ---- credentials ---- */

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_s3.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_tmp(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void test_cred_read(void **state)
{
    struct cst_err err;
    char *v;

    (void)state;
    v = s3_cred_read(write_file("a", "AKTEST\n", 0600), "access_key_file", &err);
    assert_non_null(v);
    assert_string_equal(v, "AKTEST");
    sodium_free(v);
    /* Blanks and CR around the first line go; later lines are ignored. */
    v = s3_cred_read(write_file("b", " \twJalr/K7MDENG+bPxRfiCY=\r\nsecond line\n", 0400),
                     "secret_key_file", &err);
    assert_non_null(v);
    assert_string_equal(v, "wJalr/K7MDENG+bPxRfiCY=");
    sodium_free(v);
    /* No final newline. */
    v = s3_cred_read(write_file("c", "SKTEST", 0600), "secret_key_file", &err);
    assert_non_null(v);
    assert_string_equal(v, "SKTEST");
    sodium_free(v);
}

static void test_cred_refused(void **state)
{
    struct cst_err err;
    char *path;

    (void)state;
    path = write_file("open", "SKTEST\n", 0644);
    assert_null(s3_cred_read(path, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "secret_key_file"));
    assert_non_null(strstr(err.msg, "is readable by other users (mode 0644); run chmod 600"));
    assert_non_null(strstr(err.msg, path));
    assert_null(strstr(err.msg, "SKTEST"));

    path = write_file("grp", "SKTEST\n", 0640);
    assert_null(s3_cred_read(path, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "readable by other users (mode 0640)"));

    path = write_file("gw", "SKTEST\n", 0620);
    assert_null(s3_cred_read(path, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "is writable by other users (mode 0620)"));

    path = write_file("ow", "SKTEST\n", 0602);
    assert_null(s3_cred_read(path, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "writable by other users (mode 0602)"));

    path = write_file("empty", " \n", 0600);
    assert_null(s3_cred_read(path, "access_key_file", &err));
    assert_non_null(strstr(err.msg, "is empty"));

    assert_null(s3_cred_read("/nonexistent/s3.secret", "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "cannot open secret_key_file /nonexistent/s3.secret"));

    assert_null(s3_cred_read(NULL, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "secret_key_file is not set"));

    assert_null(s3_cred_read(tmpdir, "secret_key_file", &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* ---- ListMultipartUploads (as RGW sends it) and S3 timestamps ---- */

struct uploads_seen {
    char keys[4][64], ids[4][64], when[4][40];
    int n;
};

static int seen_upload(void *arg, const char *key, const char *id, const char *initiated)
{
    struct uploads_seen *u = arg;

    if (u->n < 4) {
        snprintf(u->keys[u->n], sizeof(u->keys[0]), "%s", key);
        snprintf(u->ids[u->n], sizeof(u->ids[0]), "%s", id);
        snprintf(u->when[u->n], sizeof(u->when[0]), "%s", initiated);
    }
    u->n++;
    return 0;
}

static void test_xml_uploads(void **state)
{
    static const char page[] =
        XML_DECL "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                 "<Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
                 "<NextKeyMarker>objects/ab/ab2</NextKeyMarker>"
                 "<NextUploadIdMarker>2~xyz</NextUploadIdMarker><MaxUploads>1000</MaxUploads>"
                 "<IsTruncated>true</IsTruncated>"
                 "<Upload><Key>objects/ab/ab1</Key><UploadId>2~abc</UploadId><Initiator><ID>t"
                 "</ID></Initiator><StorageClass>STANDARD</StorageClass>"
                 "<Initiated>2026-11-20T19:00:00.123Z</Initiated></Upload>"
                 "<Upload><Key>objects/ab/a&amp;b</Key><UploadId>2~xyz</UploadId>"
                 "<Initiated>2026-11-20T19:00:01.000Z</Initiated></Upload>"
                 "</ListMultipartUploadsResult>";
    static const char last[] = XML_DECL "<ListMultipartUploadsResult><IsTruncated>false"
                                        "</IsTruncated></ListMultipartUploadsResult>";
    struct uploads_seen u;
    struct s3_uploads_page pg;

    (void)state;
    memset(&u, 0, sizeof(u));
    assert_int_equal(s3_xml_uploads(page, sizeof(page) - 1, seen_upload, &u, &pg), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.keys[0], "objects/ab/ab1");
    assert_string_equal(u.ids[0], "2~abc");
    assert_string_equal(u.when[0], "2026-11-20T19:00:00.123Z");
    assert_string_equal(u.keys[1], "objects/ab/a&b");
    assert_true(pg.truncated);
    assert_string_equal(pg.next_key, "objects/ab/ab2");
    assert_string_equal(pg.next_upload_id, "2~xyz");
    memset(&u, 0, sizeof(u));
    assert_int_equal(s3_xml_uploads(last, sizeof(last) - 1, seen_upload, &u, &pg), 0);
    assert_int_equal(u.n, 0);
    assert_false(pg.truncated);
    /* not a listing; a truncated page that does not say where to go on */
    assert_int_equal(s3_xml_uploads("<Error/>", 8, seen_upload, &u, &pg), -1);
    assert_int_equal(s3_xml_uploads("<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
                                    "</ListMultipartUploadsResult>",
                                    88, seen_upload, &u, &pg),
                     -1);

    assert_int_equal(s3_xml_time_ms("2026-11-20T19:00:00.123Z"), 1795201200123LL);
    assert_int_equal(s3_xml_time_ms("2026-11-20T19:00:00Z"), 1795201200000LL);
    assert_int_equal(s3_xml_time_ms("2026-11-20T19:00:00.5Z"), 1795201200500LL);
    assert_int_equal(s3_xml_time_ms("2026-11-20 19:00:00Z"), -1);
    assert_int_equal(s3_xml_time_ms("2026-11-20T19:00:00+01:00"), -1);
    assert_int_equal(s3_xml_time_ms(""), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_decode),
        cmocka_unit_test(test_xml_error_aws),
        cmocka_unit_test(test_xml_error_rgw),
        cmocka_unit_test(test_xml_error_absent),
        cmocka_unit_test(test_xml_exact_names),
        cmocka_unit_test(test_xml_list),
        cmocka_unit_test(test_xml_list_last_and_empty),
        cmocka_unit_test(test_xml_list_malformed),
        cmocka_unit_test(test_xml_multipart),
        cmocka_unit_test(test_xml_complete_body),
        cmocka_unit_test(test_xml_uploads),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_endpoint_parse),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_url_styles),
        cmocka_unit_test(test_explain_table),
        cmocka_unit_test(test_explain_with_config),
        cmocka_unit_test_setup_teardown(test_cred_read, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_cred_refused, setup_tmp, teardown_tmp),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
