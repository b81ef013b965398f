custodian manifest-signature v1
signs: Ed25519 over SHA-256(2026-11-20.sha256) || SHA-256(2026-11-20.json)
signature: cd6f18b6ef2840573c6b6d7cd155ff39a21f9ea44bb9206e93c56d2e92541b29d23a3d84dc4b6b353a6c95dab2b9b9af9179ffd30210a2c8b8d498f0c1a2f701
