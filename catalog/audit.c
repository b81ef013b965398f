/*
 * audit.c - the tamper-evident audit log.
 *
 * Each row's hash is SHA-256 over the previous row's hash and this row's
 * fields, so editing or deleting a row in the middle breaks every hash after
 * it, and `audit verify` finds the first broken row. Someone who can write
 * the catalog can rewrite the whole chain, or cut rows off its end: each
 * signed daily manifest, which leaves the host, publishes the chain's head
 * (row count and last hash), and `audit verify` checks the chain against
 * every head it can find (agent/cmd_audit_verify.c).
 */
#include "catalog_int.h"

#include <openssl/evp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

/* The command line every row of this process names (catalog_audit_set_command). */
static char *audit_command;
/* Rows this process appended. */
static int64_t audit_rows_written;

int64_t catalog_audit_rows_written(void)
{
    return audit_rows_written;
}

void catalog_audit_set_command(const char *command)
{
    free(audit_command);
    audit_command = command ? util_xstrdup(command) : NULL;
}

/*
 * The detail as stored: who (the Unix user of the effective uid, and the one sudo
 * names when root runs on someone's behalf), the command line, then the caller's own
 * fields. Built here, once for every writer, so that no row can leave them out.
 */
static char *detail_with_identity(const char *detail)
{
    uid_t uid = geteuid();
    struct passwd pw, *found = NULL;
    char buf[4096], *out;
    const char *sudo = getenv("SUDO_USER");
    struct json j;
    size_t len;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "user");
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found)
        json_str(&j, found->pw_name);
    else
        json_null(&j);
    json_key(&j, "uid");
    json_int(&j, (int64_t)uid);
    if (uid == 0 && sudo && sudo[0]) {
        json_key(&j, "sudo_user");
        json_str(&j, sudo);
    }
    if (audit_command) {
        json_key(&j, "command");
        json_str(&j, audit_command);
    }
    /* The caller's object goes on after these members; anything else is kept whole. */
    while (*detail == ' ' || *detail == '\n')
        detail++;
    len = strlen(detail);
    if (detail[0] == '{' && len >= 2 && detail[len - 1] == '}') {
        const char *inner = detail + 1;

        while (*inner == ' ' || *inner == '\n')
            inner++;
        out = *inner == '}' ? util_printf("%.*s}", (int)j.len, j.buf)
                            : util_printf("%.*s,%s", (int)j.len, j.buf, inner);
    } else {
        json_key(&j, "detail");
        json_raw(&j, detail);
        json_obj_end(&j);
        out = util_printf("%.*s", (int)j.len, j.buf);
    }
    json_free(&j);
    return out;
}

static void le64(unsigned char out[8], int64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)((uint64_t)v >> (8 * i));
}

static void row_hash(const unsigned char prev[32], int64_t id, int64_t at, const char *actor,
                     const char *action, const char *detail, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char num[8];
    unsigned int len = 32;

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, prev, 32);
    le64(num, id);
    EVP_DigestUpdate(ctx, num, 8);
    le64(num, at);
    EVP_DigestUpdate(ctx, num, 8);
    /* NUL separators keep ("ab","c") and ("a","bc") apart. */
    EVP_DigestUpdate(ctx, actor, strlen(actor) + 1);
    EVP_DigestUpdate(ctx, action, strlen(action) + 1);
    EVP_DigestUpdate(ctx, detail, strlen(detail) + 1);
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
}

int catalog_audit(struct catalog *cat, const char *actor, const char *action,
                  const char *detail_json, struct cst_err *err)
{
    static const char q_last[] = "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1";
    static const char q_ins[] = "INSERT INTO audit (id, at, actor, action, detail, prev_hash, "
                                "hash) VALUES (?,?,?,?,?,?,?)";
    unsigned char prev[32] = {0}, hash[32];
    int64_t id = 1, at = util_now_ms();
    sqlite3_stmt *st = catalog_stmt(cat, q_last, err);
    char *detail = NULL;
    int found, rc = -1;

    if (st == NULL)
        return -1;
    /* An unreadable chain head must not start a second chain at row 1. */
    found = catalog_step(cat, st, "read audit chain head", err);
    if (found < 0)
        return -1;
    if (found) {
        id = sqlite3_column_int64(st, 0) + 1;
        if (sqlite3_column_bytes(st, 1) == 32)
            memcpy(prev, sqlite3_column_blob(st, 1), 32);
    }
    sqlite3_reset(st);
    detail = detail_with_identity(detail_json);
    row_hash(prev, id, at, actor, action, detail, hash);
    st = catalog_stmt(cat, q_ins, err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, at);
    sqlite3_bind_text(st, 3, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, detail, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, prev, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, hash, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        catalog_sql_err(cat, err, "append audit row");
        goto out;
    }
    sqlite3_reset(st);
    audit_rows_written++;
    rc = 0;
out:
    free(detail);
    return rc;
}

int catalog_audit_verify(struct catalog *cat, int64_t *rows, struct cst_err *err)
{
    static const char q[] =
        "SELECT id, at, actor, action, detail, prev_hash, hash FROM audit ORDER BY id";
    unsigned char prev[32] = {0}, hash[32];
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int64_t count = 0, expect_id = 1;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while ((step = catalog_step(cat, st, "read audit log", err)) == 1) {
        int64_t id = sqlite3_column_int64(st, 0);

        row_hash(prev, id, sqlite3_column_int64(st, 1), (const char *)sqlite3_column_text(st, 2),
                 (const char *)sqlite3_column_text(st, 3), (const char *)sqlite3_column_text(st, 4),
                 hash);
        if (id != expect_id) {
            rc = cst_err_set(err, "audit log: row %lld is missing (next row is %lld)",
                             (long long)expect_id, (long long)id);
            break;
        }
        if (sqlite3_column_bytes(st, 5) != 32 || memcmp(sqlite3_column_blob(st, 5), prev, 32) ||
            sqlite3_column_bytes(st, 6) != 32 || memcmp(sqlite3_column_blob(st, 6), hash, 32)) {
            rc = cst_err_set(err, "audit log: row %lld was altered (its hash does not match)",
                             (long long)id);
            break;
        }
        memcpy(prev, hash, 32);
        expect_id++;
        count++;
    }
    /* A read that fails part-way is no proof of an intact chain. */
    if (step < 0)
        rc = -1;
    sqlite3_reset(st);
    *rows = count;
    return rc;
}

int catalog_each_audit(struct catalog *cat, int64_t since,
                       int (*cb)(void *arg, int64_t id, int64_t at, const char *actor,
                                 const char *action, const char *detail),
                       void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT id, at, actor, action, detail FROM audit WHERE at >= ? ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step = 0;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, since);
    while (rc == 0 && (step = catalog_step(cat, st, "read audit log", err)) == 1)
        rc = cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
                (const char *)sqlite3_column_text(st, 4));
    if (rc == 0 && step < 0)
        return -1;
    sqlite3_reset(st);
    return rc;
}

int catalog_audit_head(struct catalog *cat, int64_t *rows, unsigned char hash[32],
                       struct cst_err *err)
{
    static const char q[] = "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1";
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = 0;
    memset(hash, 0, 32);
    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return catalog_sql_err(cat, err, "read the audit log's head");
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *rows = sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) == 32)
            memcpy(hash, sqlite3_column_blob(st, 1), 32);
    } else if (rc != SQLITE_DONE) {
        catalog_sql_err(cat, err, "read the audit log's head");
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int catalog_audit_row_hash(struct catalog *cat, int64_t id, unsigned char hash[32],
                           struct cst_err *err)
{
    static const char q[] = "SELECT hash FROM audit WHERE id = ?";
    sqlite3_stmt *st = NULL;
    int rc;

    memset(hash, 0, 32);
    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return catalog_sql_err(cat, err, "read an audit row");
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) == 32)
            memcpy(hash, sqlite3_column_blob(st, 0), 32);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "read an audit row");
    }
    sqlite3_finalize(st);
    return rc;
}
