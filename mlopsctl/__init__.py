"""mlopsctl: the platform's golden-path command line."""
