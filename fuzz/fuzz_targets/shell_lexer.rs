//! Shell-word expansion never panics, with either escape character.
#![no_main]
use kiln_dockerfile::shell::{EnvList, Lex};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = EnvList::from_slice(&["A=a", "EMPTY=", "PATH=/bin:/usr/bin"]);
    for escape in ['\\', '`'] {
        let lex = Lex::new(escape);
        let _ = lex.process_word(text, &env);
        let _ = lex.process_words(text, &env);
    }
});
