//! Administrators' pages: domains and mailboxes, and what a domain admin may not see.
