//! Which binaries run the three processes: the images' standalone ones, or the launcher.

use super::Module;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// What runs the three processes.
#[derive(Clone, Debug)]
pub enum Binaries {
    /// `DIR/hub`, `DIR/producer`, `DIR/consumer`: the images' binaries.
    Standalone(PathBuf),
    /// `method-vs-message hub|producer|consumer`: one big binary, as `cargo run --release` runs.
    Launcher(PathBuf),
}

impl Binaries {
    pub fn path(&self, m: Module) -> PathBuf {
        match self {
            Binaries::Standalone(dir) => dir.join(m.name()),
            Binaries::Launcher(bin) => bin.clone(),
        }
    }

    pub(super) fn command(&self, m: Module) -> Command {
        let mut cmd = Command::new(self.path(m));
        if let Binaries::Launcher(_) = self {
            cmd.arg(m.name());
        }
        cmd
    }

    pub fn describe(&self) -> String {
        let one = |m: Module| {
            let path = self.path(m);
            let size = std::fs::metadata(&path)
                .map(|md| format!("{:.1} MB", md.len() as f64 / 1e6))
                .unwrap_or_else(|_| "?".into());
            let kind = match elf_symbols(&path) {
                Some(false) => ", stripped",
                Some(true) => ", with symbols",
                None => ", not an ELF file",
            };
            format!("{} {size}{kind}", m.name())
        };
        match self {
            Binaries::Standalone(dir) => format!(
                "standalone binaries in {} ({}; {}; {})",
                dir.display(),
                one(Module::Hub),
                one(Module::Producer),
                one(Module::Consumer)
            ),
            Binaries::Launcher(bin) => format!(
                "the launcher {} ({}) as `hub|producer|consumer` subcommands (not as on a device)",
                bin.display(),
                one(Module::Hub)
            ),
        }
    }

    /// `--binaries` as given: a directory with the three binaries, or the launcher binary.
    pub fn from_arg(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let b = Binaries::Standalone(path.to_owned());
            for m in Module::ALL {
                if !b.path(m).is_file() {
                    bail!(
                        "{} has no {} binary (build them with `cargo build --profile dist -p hub -p producer -p consumer`)",
                        path.display(),
                        m.name()
                    );
                }
            }
            Ok(b)
        } else if path.is_file() {
            Ok(Binaries::Launcher(path.to_owned()))
        } else {
            bail!("--binaries {}: no such directory or file", path.display())
        }
    }

    /// The images' binaries if built (target/dist), else the standalone ones next to this binary
    /// (target/release), else the launcher there.
    pub fn find() -> Result<Self> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/release"));
        let mut dirs = Vec::new();
        if let Some(target) = exe_dir.parent() {
            dirs.push(target.join("dist"));
        }
        dirs.push(exe_dir.clone());
        for dir in dirs {
            if Module::ALL.iter().all(|m| dir.join(m.name()).is_file()) {
                return Ok(Binaries::Standalone(dir));
            }
        }
        let launcher = crate::launcher::default_launcher();
        if launcher.is_file() {
            return Ok(Binaries::Launcher(launcher));
        }
        bail!(
            "no hub/producer/consumer binaries in target/dist or {}: build them with `cargo build --profile dist -p hub -p producer -p consumer` (as the Dockerfile does) or pass --binaries",
            exe_dir.display()
        )
    }
}

/// Whether an ELF64 little-endian file has a symbol table (`SHT_SYMTAB`): `Some(false)` for a
/// stripped binary (the images' profile dist), `None` when it is not such a file (a script).
fn elf_symbols(path: &Path) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).ok()?;
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if h[..4] != *b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let shoff = u64::from_le_bytes(h[0x28..0x30].try_into().ok()?);
    let shentsize = u64::from(u16::from_le_bytes([h[0x3a], h[0x3b]]));
    let shnum = u64::from(u16::from_le_bytes([h[0x3c], h[0x3d]]));
    let mut sh = [0u8; 8];
    for i in 0..shnum {
        f.read_exact_at(&mut sh, shoff + i * shentsize).ok()?;
        if u32::from_le_bytes([sh[4], sh[5], sh[6], sh[7]]) == 2 {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn elf_symbols_tells_a_script_from_a_binary() {
        let exe = std::env::current_exe().unwrap_or_default();
        assert!(elf_symbols(&exe).is_some(), "{}", exe.display());
        let script = std::env::temp_dir().join(format!("footprint-{}.sh", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\n").unwrap_or_default();
        assert_eq!(elf_symbols(&script), None);
        let _ = std::fs::remove_file(&script);
    }
}
