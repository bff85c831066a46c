//! A mailbox's own page: password, aliases, spam threshold, blocklist.
