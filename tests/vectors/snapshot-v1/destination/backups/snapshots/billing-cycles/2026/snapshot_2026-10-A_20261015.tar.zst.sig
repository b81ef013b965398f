custodian snapshot-signature v1
package: snapshot_2026-10-A_20261015.tar.zst
package-sha256: bec52a98e22be5d152af92b71262837f38ad53d3b377096c885ffb3e8413792f
package-size: 7972
sealed-sha256: 9cb83b7e3d08d56fff31554a275c0974d5da76969ff98aef52d1e45d5c59cafb
sealed-size: 8115
signs: Ed25519 over SHA-256(package) || SHA-256(sealed object), the 64 bytes whose hex is above
signature: 5aa14888761d3ad5ecde7ce3e09f0c327c08b713475268f25c8bb7db1dffaca3453490fae91a3ace67ef5ca5a7308b00bcdfc2ff0ad074cd042ab93ae0af390a
