//! CPU architectures as k3s names them, from `uname -m`, with the release asset names of each.
//!
//! Mapping as in k3s-io/k3s `install.sh` (`setup_verify_arch`): x86_64/amd64 → amd64,
//! aarch64/arm64 → arm64, arm* → arm (assets suffixed `-armhf`), s390x → s390x.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum K3sArch {
    Amd64,
    Arm64,
    /// 32-bit ARM (Raspberry Pi OS 32-bit reports `armv7l`).
    Arm,
    S390x,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported architecture {0:?}: k3s runs on x86_64, aarch64, armv7 and s390x")]
pub struct UnsupportedArch(pub String);

impl K3sArch {
    pub fn from_uname(machine: &str) -> Result<K3sArch, UnsupportedArch> {
        match machine.trim() {
            "x86_64" | "amd64" => Ok(K3sArch::Amd64),
            "aarch64" | "arm64" => Ok(K3sArch::Arm64),
            "s390x" => Ok(K3sArch::S390x),
            other if other.starts_with("arm") => Ok(K3sArch::Arm),
            other => Err(UnsupportedArch(other.to_owned())),
        }
    }

    /// The value of the `kubernetes.io/arch` node label.
    pub fn as_str(self) -> &'static str {
        match self {
            K3sArch::Amd64 => "amd64",
            K3sArch::Arm64 => "arm64",
            K3sArch::Arm => "arm",
            K3sArch::S390x => "s390x",
        }
    }

    /// Release asset of the k3s binary (`k3s`, `k3s-arm64`, `k3s-armhf`, `k3s-s390x`).
    pub fn binary_asset(self) -> &'static str {
        match self {
            K3sArch::Amd64 => "k3s",
            K3sArch::Arm64 => "k3s-arm64",
            K3sArch::Arm => "k3s-armhf",
            K3sArch::S390x => "k3s-s390x",
        }
    }

    /// Release asset with the air-gap images (`k3s-airgap-images-arm64.tar.zst`, ...).
    pub fn airgap_images_asset(self) -> String {
        format!("k3s-airgap-images-{}.tar.zst", self.as_str())
    }

    /// Checksum file listing the assets of this architecture.
    pub fn checksum_asset(self) -> String {
        format!("sha256sum-{}.txt", self.as_str())
    }
}

impl fmt::Display for K3sArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_uname_like_the_installer() {
        for (machine, arch, asset) in [
            ("x86_64", K3sArch::Amd64, "k3s"),
            ("aarch64", K3sArch::Arm64, "k3s-arm64"),
            ("armv7l\n", K3sArch::Arm, "k3s-armhf"),
            ("armv6l", K3sArch::Arm, "k3s-armhf"),
            ("s390x", K3sArch::S390x, "k3s-s390x"),
        ] {
            let parsed = K3sArch::from_uname(machine).unwrap();
            assert_eq!(parsed, arch);
            assert_eq!(parsed.binary_asset(), asset);
        }
        assert_eq!(
            K3sArch::from_uname("riscv64").unwrap_err().to_string(),
            "unsupported architecture \"riscv64\": k3s runs on x86_64, aarch64, armv7 and s390x"
        );
        assert_eq!(
            K3sArch::Arm.airgap_images_asset(),
            "k3s-airgap-images-arm.tar.zst"
        );
        assert_eq!(K3sArch::Arm64.checksum_asset(), "sha256sum-arm64.txt");
    }
}
