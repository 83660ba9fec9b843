//! The benchmarks' command line: `<command> [--name value]…` (cargo adds `--bench`, ignored).

pub struct Options {
    pub command: String,
    flags: Vec<(String, String)>,
}

impl Options {
    pub fn parse() -> Self {
        let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
        let command = args.next().unwrap_or_else(|| "all".to_owned());
        let rest: Vec<String> = args.collect();
        let flags = rest
            .chunks(2)
            .map(|pair| {
                (
                    pair[0].trim_start_matches("--").to_owned(),
                    pair.get(1).cloned().unwrap_or_default(),
                )
            })
            .collect();
        Self { command, flags }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn number(&self, name: &str, default: f64) -> f64 {
        self.get(name)
            .map_or(default, |value| value.parse().expect("a number"))
    }

    /// Whether servers and the driver are pinned to their own CPUs (`--pin no` turns it off).
    pub fn pin(&self) -> bool {
        self.get("pin") != Some("no")
    }
}
