//! `tag-score`: tags every message.
//!
//! Hook: `headers`. For every message it
//!
//! * adds the header `X-Poczta-Tagged: yes`,
//! * adds the score symbol `TAGGED` with the configured weight
//!   (description "tagged by tag-score"),
//! * removes every `X-Remove-Me` header field,
//!
//! and continues.
//!
//! Config (optional): `config = { weight = 1.5 }`; default weight 1.0.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

/// The plugin's config.
#[derive(serde::Deserialize, Debug)]
#[serde(default)]
pub struct Config {
    /// Weight of the `TAGGED` symbol.
    pub weight: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { weight: 1.0 }
    }
}

struct TagScore;

impl Plugin for TagScore {
    const NAME: &'static str = "tag-score";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let cfg: Config = poczta_plugin::config()?;
        poczta_plugin::add_header("X-Poczta-Tagged", "yes");
        poczta_plugin::add_symbol("TAGGED", cfg.weight, "tagged by tag-score");
        poczta_plugin::remove_header("X-Remove-Me");
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(TagScore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_default_and_configured() {
        assert_eq!(poczta_plugin::parse_config::<Config>("{}").unwrap().weight, 1.0);
        assert_eq!(
            poczta_plugin::parse_config::<Config>(r#"{"weight": 1.5}"#)
                .unwrap()
                .weight,
            1.5
        );
        assert_eq!(
            poczta_plugin::parse_config::<Config>(r#"{"weight": -2}"#)
                .unwrap()
                .weight,
            -2.0
        );
        assert!(poczta_plugin::parse_config::<Config>(r#"{"weight": "x"}"#).is_err());
    }
}
