custodian manifest-signature v1
signs: Ed25519 over SHA-256(2026-11-20.sha256) || SHA-256(2026-11-20.json)
signature: 773154bb79553c066e66a67dff0f913d48aad0f44626b8f489acd51da5ef749e763497fd113bbf51bd57bf6250bd7799b455ba809ab139ad6cac65fe12cf8101
