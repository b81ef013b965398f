custodian snapshot-signature v1
package: snapshot_Oct 2026%2FB_20261029.tar.zst
package-sha256: 940aa8e527a566dc1f6f46e61b2572a7c3b386b2a472ebc195f778a65de869b9
package-size: 7218
sealed-sha256: deb29256d2f321fe5bd84c2faee3bd5f3186d877c0aec9f1dc449fac99a19525
sealed-size: 7361
signs: Ed25519 over SHA-256(package) || SHA-256(sealed object), the 64 bytes whose hex is above
signature: 7172b4cc794d06e8b0b2cb4971008f1a08754b3de2c5e74bada0969e10ec38bceecc6690c907a22389e7ad72f447af191c49f94dd9f68d0e1ac7f667e0bc6c06
