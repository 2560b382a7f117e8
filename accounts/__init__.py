"""Dashboard and API accounts: users, roles, passwords, tokens, sessions and login lockout."""
