//! BuildKit's own lexer test data (`shell/envVarTest`, `shell/wordsTest`, copied byte for byte
//! into conformance/buildkit/shell), run with the rules of BuildKit's lex_test.go.

use kiln_dockerfile::shell::{EnvList, Lex};

fn data(name: &str) -> String {
    // The repo's single copy of BuildKit's test data (with its LICENSE and README).
    let path = format!(
        "{}/../../conformance/buildkit/shell/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn env_var_test() {
    let lex = Lex::new('\\');
    let env = EnvList::from_slice(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let (mut run, mut failures) = (0, Vec::new());
    for (i, line) in data("envVarTest").lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(parts.len(), 3, "line {}: {line:?}", i + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        assert!(
            matches!(platform, "A" | "U" | "W"),
            "line {}: tag {platform}",
            i + 1
        );
        // We are Unix: W-only lines describe Windows' case-insensitive variables.
        if platform == "W" {
            continue;
        }
        run += 1;
        let got = lex.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => e != "error" && w == e,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {run} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        run, 228,
        "number of A/U lines run (the 2 W lines are Windows-only)"
    );
}

#[test]
fn words_test() {
    let lex = Lex::new('\\');
    let mut envs: Vec<String> = Vec::new();
    let (mut run, mut failures) = (0, Vec::new());
    for (i, line) in data("wordsTest").lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            envs.push(rest.trim_start_matches(' ').to_string());
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}: {line:?}", i + 1);
        let test = parts[0].trim();
        let expected: Vec<String> = parts[1]
            .trim_start_matches(' ')
            .split(',')
            .map(String::from)
            .collect();
        let got = lex
            .process_words(test, &EnvList::from_slice(&envs))
            .unwrap_or_else(|_| vec!["error".to_string()]);
        run += 1;
        if got != expected {
            failures.push(format!(
                "line {}: {test:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {run} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 24);
}
