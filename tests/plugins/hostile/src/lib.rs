//! A plugin that attacks its sandbox: `apply` does what the `attack` setting names.
//! Every attack must end as a clean, typed failure of that one call.

wit_bindgen::generate!({ path: "../../../plugins/wit", world: "actuator" });

use policyctl::actuator::command::run;
use policyctl::actuator::config;
use policyctl::actuator::log::{Level, log};
use policyctl_plugin_sdk::http;

struct Hostile;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, trail: &mut [u64; 64]) -> u64 {
    trail[(depth % 64) as usize] = depth;
    // Not a tail call: the frame must stay.
    recurse(depth + 1, trail).wrapping_add(trail[(depth % 7) as usize])
}

fn attack(name: &str) -> Result<Outcome, ActuationError> {
    let fail = |m: String| Err(ActuationError::Unavailable(m));
    match name {
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![7u8; 8 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => {
            let v: Vec<u32> = Vec::new();
            let i = std::hint::black_box(3usize);
            Ok(Outcome {
                replicas: v[i],
                message: String::new(),
            })
        }
        "recursion" => {
            let mut trail = [0u64; 64];
            let n = recurse(0, &mut trail);
            Ok(Outcome {
                replicas: n as u32,
                message: String::new(),
            })
        }
        "http-not-granted" | "http-private" => {
            let url = config::get("url").unwrap_or_default();
            match http::request("GET", &url, &[], &[]) {
                Ok(r) => Ok(Outcome {
                    replicas: 0,
                    message: format!("reached {url}: HTTP {}", r.status),
                }),
                Err(http::Error::Denied) => {
                    Err(ActuationError::Forbidden(format!("{url} was denied")))
                }
                Err(e) => fail(e.to_string()),
            }
        }
        "file-escape" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Ok(Outcome {
                replicas: 0,
                message: text,
            }),
            Err(e) => Err(ActuationError::Forbidden(format!("/etc/passwd: {e}"))),
        },
        "command-not-allowed" => match run("/bin/sh", &["-c".into(), "echo pwned".into()]) {
            Ok(out) => Ok(Outcome {
                replicas: 0,
                message: String::from_utf8_lossy(&out.stdout).into_owned(),
            }),
            Err(e) => Err(ActuationError::Forbidden(format!("{e:?}"))),
        },
        "log-flood" => {
            let line = "x".repeat(10_000);
            for _ in 0..100_000 {
                log(Level::Info, &line);
            }
            Ok(Outcome {
                replicas: 1,
                message: "flooded".into(),
            })
        }
        // Host memory outside the plugin's own: header maps of 4 × 16 KB, kept.
        "fields-flood" => {
            use wasip2::http::types::Fields;
            let value = vec![b'v'; 16 * 1024];
            let per: usize = config::get("headers").and_then(|n| n.parse().ok()).unwrap_or(4);
            let mut hoard = Vec::new();
            loop {
                let fields = Fields::new();
                for i in 0..per {
                    let _ = fields.append(&format!("x-{i}"), &value);
                }
                hoard.push(fields);
            }
        }
        // Descriptors: the same granted file opened again and again, all kept open;
        // then hold them until the budget ends.
        "fd-flood" => {
            let path = config::get("file").unwrap_or_default();
            let mut hoard = Vec::new();
            while let Ok(f) = std::fs::File::open(&path) {
                hoard.push(f);
            }
            let mut x: u64 = hoard.len() as u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        // Connections: as many requests as the host lets through.
        "http-flood" => {
            let url = config::get("url").unwrap_or_default();
            let mut sent = 0u32;
            loop {
                match http::request("GET", &url, &[], &[]) {
                    Ok(_) => sent += 1,
                    Err(e) => return fail(format!("after {sent} requests: {e}")),
                }
            }
        }
        // An 8 MB error message.
        "huge-error" => fail("e".repeat(8 << 20)),
        // A granted command that leaves a child behind.
        "orphan" => {
            let program = config::get("program").unwrap_or_default();
            let arg = config::get("arg").unwrap_or_default();
            match run(&program, &[arg]) {
                Ok(out) => Ok(Outcome {
                    replicas: 1,
                    message: String::from_utf8_lossy(&out.stdout).into_owned(),
                }),
                Err(e) => fail(format!("{e:?}")),
            }
        }
        "environment" => Ok(Outcome {
            replicas: std::env::vars().count() as u32,
            message: format!("{:?}", std::env::vars().collect::<Vec<_>>()),
        }),
        other => Err(ActuationError::InvalidConfig(format!(
            "unknown attack `{other}`"
        ))),
    }
}

impl Guest for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0".into(),
            target_kinds: vec![],
        }
    }

    fn observe(_target: String) -> Result<Observation, ActuationError> {
        Err(ActuationError::Unsupported(
            "hostile plugins do not observe".into(),
        ))
    }

    fn apply(_d: Decision) -> Result<Outcome, ActuationError> {
        attack(&config::get("attack").unwrap_or_default())
    }
}

export!(Hostile);
