"""National crypto: SM2, SM3, SM4, HMAC-SM3, SM2 certificates and key files."""
