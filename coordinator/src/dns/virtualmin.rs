//! placeholder
use serde::Deserialize;
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
pub fn build(_c: &Config) -> Result<super::dryrun::DryRun, String> {
    todo!()
}
