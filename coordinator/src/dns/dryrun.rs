//! placeholder
use serde::Deserialize;
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
pub struct DryRun;
impl super::DnsBackend for DryRun {
    fn kind(&self) -> &'static str {
        "dryrun"
    }
    fn current<'a>(
        &'a self,
        _z: &'a str,
        _l: &'a [super::RecordSet],
    ) -> futures::future::BoxFuture<'a, Result<Vec<super::RecordSet>, super::DnsError>> {
        todo!()
    }
    fn apply<'a>(
        &'a self,
        _c: &'a super::Change,
    ) -> futures::future::BoxFuture<'a, Result<(), super::DnsError>> {
        todo!()
    }
}
pub fn build(_c: &Config) -> Result<DryRun, String> {
    todo!()
}
