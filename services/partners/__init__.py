"""The partners service: partners, contracts with versioned terms, and the partner portal."""
