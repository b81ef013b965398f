custodian manifest-signature v1
signs: Ed25519 over SHA-256(2026-11-20.attempt-2.sha256) || SHA-256(2026-11-20.attempt-2.json)
signature: c001e3a51f7c74060a3beeb32d0d964a8055484dffd566a63b9e6043d9632ed63985bb24cb4432684d3da0c52d005f95a9254e943780d79c1b58fcb702dbff0f
