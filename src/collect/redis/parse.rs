//! Pure parsing of Redis's INFO text: `key:value` lines under `# Section`
//! headers, and the `k=v,k=v` lists some values hold (keyspace, replicas,
//! commandstats, latencystats).

use std::collections::BTreeMap;

/// One INFO reply, its fields by name (section headers dropped: field
/// names are unique across sections).
#[derive(Debug, Default, Clone)]
pub struct Info {
    fields: BTreeMap<String, String>,
}

impl Info {
    /// Parses an INFO reply.
    pub fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Info { fields }
    }

    /// A field as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field; absent when missing or not a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.text(key)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// `ok` → 1, anything else → 0 (absent when missing).
    pub fn status(&self, key: &str) -> Option<f64> {
        self.text(key).map(|v| if v == "ok" { 1.0 } else { 0.0 })
    }

    /// Fields whose name starts with `prefix`, with the rest of the name and
    /// the value split into its `k=v` pairs (`db0:keys=1,expires=0`).
    pub fn lists<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, BTreeMap<&'a str, &'a str>)> + 'a {
        self.fields
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, pairs(v))))
    }
}

/// `k=v,k=v` into a map.
pub fn pairs(text: &str) -> BTreeMap<&str, &str> {
    text.split(',').filter_map(|p| p.split_once('=')).collect()
}

/// A number out of a `k=v` map.
pub fn num(map: &BTreeMap<&str, &str>, key: &str) -> Option<f64> {
    map.get(key)?.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n# Stats\r\nkeyspace_hits:3\r\n\
        # Persistence\r\nrdb_last_bgsave_status:err\r\naof_last_write_status:ok\r\n\
        # Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=100\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n\
        # Commandstats\r\ncmdstat_config|get:calls=2,usec=30,usec_per_call=15.00,rejected_calls=0,failed_calls=1\r\n";

    #[test]
    fn fields_numbers_statuses_and_lists() {
        let info = Info::parse(TEXT);
        assert_eq!(info.text("redis_version"), Some("7.0.15"));
        assert_eq!(info.number("uptime_in_seconds"), Some(12.0));
        assert_eq!(info.number("redis_version"), None);
        assert_eq!(info.number("missing"), None);
        assert_eq!(info.status("rdb_last_bgsave_status"), Some(0.0));
        assert_eq!(info.status("aof_last_write_status"), Some(1.0));
        let dbs: Vec<_> = info
            .lists("db")
            .map(|(db, m)| (db.to_string(), num(&m, "keys"), num(&m, "expires")))
            .collect();
        assert_eq!(
            dbs,
            [
                ("0".to_string(), Some(5.0), Some(2.0)),
                ("3".to_string(), Some(1.0), Some(0.0))
            ]
        );
        let (cmd, stats) = info.lists("cmdstat_").next().unwrap();
        assert_eq!(cmd, "config|get");
        assert_eq!(num(&stats, "failed_calls"), Some(1.0));
    }
}
