//! The synthetic mail system every lookup and login benchmark shares: the same addresses go into couchmail's
//! index, the LMDB file, the PostgreSQL table and Dovecot's passwd-file.
//!
//! `n_mailboxes` mailboxes spread over one domain per hundred mailboxes, each with the same argon2id hash (one real
//! hash, made once: hashing a hundred thousand times would take an hour and change nothing that is measured, since
//! every login verifies its hash again anyway).
//! The stores of issue #4's benchmark hold more ([`Population::store_documents`]): the same aliases, catch-alls and
//! alias domains as issue #2's index benchmark (crates/index/examples/index_bench.rs), so that the two builds read
//! the same kind of store.

use anyhow::{Context, Result};
use couchmail_model::{
    Address, Alias, AliasKey, Document, Domain, DomainAlias, DomainName, Mailbox, PasswordHash, PolicySettings,
};

/// The password of every mailbox.
pub const PASSWORD: &str = "benchmark password";

/// Mailbox addresses and queries of a synthetic mail system.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub n_mailboxes: usize,
}

impl Population {
    pub fn new(n_mailboxes: usize) -> Population {
        Population { n_mailboxes: n_mailboxes.max(1) }
    }

    pub fn n_domains(&self) -> usize {
        self.n_mailboxes.div_ceil(100)
    }

    pub fn domain_name(&self, domain_idx: usize) -> String {
        format!("d{domain_idx}.example")
    }

    /// The address of mailbox `user_idx`.
    pub fn address(&self, user_idx: usize) -> String {
        format!("user{user_idx}@{}", self.domain_name(user_idx % self.n_domains()))
    }

    /// An address in a served domain that is no mailbox.
    pub fn absent_address(&self, absent_idx: usize) -> String {
        format!("nobody{absent_idx}@{}", self.domain_name(absent_idx % self.n_domains()))
    }

    /// Every domain and mailbox, each mailbox carrying `hash`.
    pub fn documents(&self, hash: &PasswordHash) -> Result<Vec<Document>> {
        let mut documents = Vec::with_capacity(self.n_domains() + self.n_mailboxes);
        for domain_idx in 0..self.n_domains() {
            let name: DomainName = self.domain_name(domain_idx).parse().context("a generated domain name")?;
            documents.push(Document::Domain(Domain {
                name,
                active: true,
                quota_default: None,
                max_mailboxes: None,
                policy: PolicySettings::default(),
            }));
        }
        for user_idx in 0..self.n_mailboxes {
            let address: Address = self.address(user_idx).parse().context("a generated address")?;
            documents.push(Document::Mailbox(Mailbox {
                address,
                name: String::new(),
                password: Some(hash.clone()),
                active: true,
                quota_bytes: Some(1 << 30),
                roles: Vec::new(),
                sieve_active: None,
                policy: PolicySettings::default(),
            }));
        }
        Ok(documents)
    }

    /// What issue #4's stores hold, in the order issue #2's index benchmark writes it: every domain, an alias
    /// domain and a catch-all for one domain in ten, every mailbox (as [`Population::documents`] makes them), then
    /// as many aliases as mailboxes, one in ten with two targets.
    pub fn store_documents(&self, hash: &PasswordHash) -> Result<Vec<Document>> {
        let n_domains = self.n_domains();
        let n_tenth = n_domains.div_ceil(10);
        let mut documents = self.documents(hash)?;
        documents.reserve(2 * n_tenth + self.n_mailboxes);
        let mut extras = Vec::with_capacity(2 * n_tenth);
        for tenth_idx in 0..n_tenth {
            let name: DomainName = format!("alias{tenth_idx}.example").parse().context("a generated alias domain")?;
            let target: DomainName = self.domain_name(tenth_idx * 10).parse().context("a generated domain name")?;
            extras.push(Document::DomainAlias(DomainAlias { name, target }));
        }
        for tenth_idx in 0..n_tenth {
            let key = AliasKey::parse(&format!("@{}", self.domain_name(tenth_idx * 10))).context("a catch-all")?;
            let target: Address = self.address(tenth_idx * 10).parse().context("a generated address")?;
            extras.push(Document::Alias(Alias { key, targets: vec![target], active: true }));
        }
        // Domains first, then alias domains and catch-alls, then mailboxes: the order the index benchmark writes.
        documents.splice(n_domains..n_domains, extras);
        for alias_idx in 0..self.n_mailboxes {
            let user_idx = alias_idx % self.n_mailboxes;
            let key = AliasKey::parse(&format!("alias{alias_idx}@{}", self.domain_name(user_idx % n_domains)))
                .context("a generated alias")?;
            let mut targets: Vec<Address> = vec![self.address(user_idx).parse().context("a generated address")?];
            let second_idx = (user_idx + n_domains) % self.n_mailboxes;
            if alias_idx.is_multiple_of(10) && second_idx != user_idx {
                targets.push(self.address(second_idx).parse().context("a generated address")?);
            }
            documents.push(Document::Alias(Alias { key, targets, active: true }));
        }
        Ok(documents)
    }

    /// `n_queries` lookup keys in a shuffled order, one in four absent, the same for every `seed`.
    pub fn queries(&self, n_queries: usize, seed: u64) -> Vec<String> {
        let mut random = SplitMix64(seed);
        let mut queries: Vec<String> = (0..n_queries)
            .map(|query_idx| {
                let pick = random.below(self.n_mailboxes);
                if query_idx % 4 == 3 { self.absent_address(pick) } else { self.address(pick) }
            })
            .collect();
        // Fisher–Yates, so that the absent keys do not come at a fixed stride.
        for query_idx in (1..queries.len()).rev() {
            let other_idx = random.below(query_idx + 1);
            queries.swap(query_idx, other_idx);
        }
        queries
    }

    /// How many of [`Population::queries`]`(n_queries, _)` are present.
    pub fn n_present(n_queries: usize) -> usize {
        n_queries - n_queries / 4
    }
}

/// A small, fast, seeded generator (Steele, Lea and Flood, 2014): the benchmark needs the same keys every run,
/// not unpredictable ones.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is far below what a benchmark can see.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_quarter_of_the_queries_are_absent_and_the_rest_are_mailboxes() {
        let population = Population::new(1000);
        let mailboxes: HashSet<String> = (0..1000).map(|user_idx| population.address(user_idx)).collect();
        let queries = population.queries(2000, 7);
        let n_present = queries.iter().filter(|query| mailboxes.contains(*query)).count();
        assert_eq!(n_present, Population::n_present(2000));
        assert_eq!(queries.len() - n_present, 500);
        assert_eq!(queries, population.queries(2000, 7));
    }

    #[test]
    fn documents_are_one_domain_per_hundred_mailboxes() {
        let hash = PasswordHash::parse(
            "{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$avUvXNtnn/GNZVscoS8F6XVDSn5QnlrimsKMNNw4iI8",
        )
        .unwrap();
        let documents = Population::new(250).documents(&hash).unwrap();
        assert_eq!(documents.len(), 3 + 250);
        assert_eq!(documents[3].id(), "mailbox:user0@d0.example");
        assert_eq!(documents[4].id(), "mailbox:user1@d1.example");
    }

    #[test]
    fn store_documents_add_alias_domains_catch_alls_and_an_alias_per_mailbox() {
        let hash = PasswordHash::parse(
            "{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$avUvXNtnn/GNZVscoS8F6XVDSn5QnlrimsKMNNw4iI8",
        )
        .unwrap();
        let population = Population::new(2500);
        let documents = population.store_documents(&hash).unwrap();
        // 25 domains, 3 alias domains, 3 catch-alls, 2500 mailboxes, 2500 aliases.
        assert_eq!(documents.len(), 25 + 3 + 3 + 2500 + 2500);
        assert_eq!(documents[25].id(), "domain-alias:alias0.example");
        assert_eq!(documents[28].id(), "alias:@d0.example");
        assert_eq!(documents[31].id(), "mailbox:user0@d0.example");
        let Document::Alias(first) = &documents[31 + 2500] else { panic!("{:?}", documents[31 + 2500]) };
        assert_eq!(first.key.to_string(), "alias0@d0.example");
        assert_eq!(first.targets.len(), 2);
        let Document::Alias(second) = &documents[31 + 2501] else { panic!("{:?}", documents[31 + 2501]) };
        assert_eq!(second.targets.iter().map(ToString::to_string).collect::<Vec<_>>(), ["user1@d1.example"]);
        let ids: HashSet<String> = documents.iter().map(Document::id).collect();
        assert_eq!(ids.len(), documents.len());
        let index = couchmail_index::Snapshot::from_documents(documents);
        let counts = index.counts();
        assert_eq!((counts.domains, counts.alias_domains, counts.mailboxes, counts.aliases), (25, 3, 2500, 2503));
        assert_eq!(counts.invalid_documents, 0);
    }
}
