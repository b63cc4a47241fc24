//! The hidden `generate man|completions DIR` subcommand both binaries carry for
//! `deploy/package.sh`: man pages and shell completions written from a binary's own clap
//! definitions, so they never drift from its flags.

use std::path::Path;

/// What `generate` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Generated {
    /// One man page per command and subcommand.
    Man,
    /// Completions for bash, zsh and fish.
    Completions,
}

/// Writes `what` for the command `cmd` (installed as `bin`) into `dir`, creating it.
pub fn generate(
    mut cmd: clap::Command,
    bin: &str,
    what: Generated,
    dir: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    match what {
        Generated::Man => clap_mangen::generate_to(cmd, dir),
        Generated::Completions => [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ]
        .into_iter()
        .try_for_each(|shell| clap_complete::generate_to(shell, &mut cmd, bin, dir).map(|_| ())),
    }
    .map_err(|e| format!("{}: cannot write: {e}", dir.display()))
}
