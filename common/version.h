/*
 * version.h - custodian's version, written into what it produces for the
 * long term (snapshot.json) so that a reader in 2033 knows which program
 * made a package. Raised with each release.
 */
#ifndef CST_VERSION_H
#define CST_VERSION_H

#define CUSTODIAN_VERSION "0.9.0"

#endif
