/*
 * keys.h - custodian's key files: generating a key set and loading keys.
 *
 * A key file is two lines of text, so that an operator can still read it in
 * 2033 without this program:
 *
 *     custodian <kind> v1
 *     <key bytes as lowercase hex>
 *
 * Kinds: backup-public-key (X25519, 32 bytes), backup-secret-key (X25519,
 * 32), naming-key (BLAKE2b key, 32), signing-secret-key (Ed25519, 64),
 * signing-public-key (Ed25519, 32). Secret key files must be mode 0600 (or
 * stricter), as ssh insists for a private key.
 */
#ifndef CST_KEYS_H
#define CST_KEYS_H

#include <stddef.h>

#include "../common/err.h"

#define KEYS_PUBLIC_BYTES 32         /* backup-public-key, signing-public-key */
#define KEYS_BACKUP_SECRET_BYTES 32  /* backup-secret-key */
#define KEYS_NAMING_BYTES 32         /* naming-key */
#define KEYS_SIGNING_SECRET_BYTES 64 /* signing-secret-key */

/*
 * Write a new key set into out_dir: backup.pub, backup.key, naming.key,
 * signing.key, signing.pub. out_dir is created 0700 if missing. Refuses to
 * overwrite any existing key file; on failure no file of the set is left.
 */
int keys_generate(const char *out_dir, struct cst_err *err);

/* Load a backup-public-key file into pk. */
int keys_load_public(const char *path, unsigned char pk[32], struct cst_err *err);

/* Load a signing-public-key file into pk (to verify manifest signatures). */
int keys_load_signing_public(const char *path, unsigned char pk[32], struct cst_err *err);

/*
 * The Ed25519 public key that checks signatures made with the signing key at
 * signing_key: taken from that secret key file where it can be read (libsodium keeps
 * the public half in it), else from the signing.pub beside it (signing.key ->
 * signing.pub), so that hosts holding only the public key verify too.
 */
int keys_load_signing_pk(const char *signing_key, unsigned char pk[32], struct cst_err *err);

/*
 * Load a secret key of the given kind ("backup-secret-key", "naming-key",
 * "signing-secret-key") into out, which the caller allocates with
 * sodium_malloc; len must be that kind's size. Refuses a file that group or
 * other users may read or write, and a file of another kind.
 */
int keys_load_secret(const char *path, const char *kind, unsigned char *out, size_t len,
                     struct cst_err *err);

/* Load and check the signing secret key file (private, right kind, halves agree), as the
 * daily run will; nothing is kept. For start-up and doctor. */
int keys_check_signing_key(const char *path, struct cst_err *err);

/*
 * The backup secret key file belongs to the backup public key file: its X25519 public
 * half is that key. A mismatch means the files come from different key sets and nothing
 * encrypted to the public key could be restored with that secret key. Both files are
 * loaded with their usual checks; nothing is kept.
 */
int keys_check_backup_pair(const char *public_path, const char *secret_path, struct cst_err *err);

/*
 * A file that decides whom custodian trusts (ca_file, known_hosts): whoever can write it
 * can add a CA or a host key. It must be a regular file that no other user can write
 * (no group or other write bit) and owned by root or by the user custodian runs as.
 * what names it in the message ("destination offsite: ca_file").
 */
int keys_check_trust_file(const char *path, const char *what, struct cst_err *err);

#endif
