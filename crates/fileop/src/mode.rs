//! Symbolic `--chmod` values (`u+x,g-w`, `a=rX`, or octal), parsed and applied
//! as BSD `setmode(3)` does with a zero umask, which is what BuildKit uses.

use crate::error::{FileOpError, Result};

const STANDARD: u32 = 0o6777;
const SETID: u32 = 0o6000;
const STICKY: u32 = 0o1000;

#[derive(Debug, Clone)]
enum Spec {
    /// Permission bits; `x_if` adds `x` when the file is a dir or already
    /// executable by someone (`X`).
    Bits { perm: u32, x_if: bool },
    /// Copy the permissions of class `u`, `g` or `o`.
    Copy(char),
}

#[derive(Debug, Clone)]
struct Cmd {
    who: u32,
    op: char,
    spec: Spec,
}

/// A parsed chmod expression.
#[derive(Debug, Clone)]
pub struct ModeSet {
    cmds: Vec<Cmd>,
}

impl ModeSet {
    /// Parses an octal or symbolic mode.
    pub fn parse(s: &str) -> Result<Self> {
        let err = || FileOpError::Mode(s.to_string());
        if s.is_empty() {
            return Err(err());
        }
        if s.as_bytes()[0].is_ascii_digit() {
            let v = u32::from_str_radix(s, 8).map_err(|_| err())?;
            if v & !0o7777 != 0 {
                return Err(err());
            }
            let cmds = vec![Cmd {
                who: 0o7777,
                op: '=',
                spec: Spec::Bits {
                    perm: v,
                    x_if: false,
                },
            }];
            return Ok(ModeSet { cmds });
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut cmds = Vec::new();
        loop {
            let mut who = 0u32;
            while let Some(c) = b.get(i) {
                who |= match c {
                    b'a' => STANDARD,
                    b'u' => 0o4700,
                    b'g' => 0o2070,
                    b'o' => 0o0007,
                    _ => break,
                };
                i += 1;
            }
            loop {
                let op = match b.get(i) {
                    Some(b'+') => '+',
                    Some(b'-') => '-',
                    Some(b'=') => '=',
                    _ => return Err(err()),
                };
                i += 1;
                let (mut perm, mut x_if, mut w) = (0u32, false, who);
                let mut copied = false;
                while let Some(c) = b.get(i) {
                    match c {
                        b'r' => perm |= 0o444,
                        b'w' => perm |= 0o222,
                        b'x' => perm |= 0o111,
                        b'X' if op == '-' => perm |= 0o111,
                        b'X' => x_if = true,
                        b's' if who == 0 || who & !0o7 != 0 => perm |= SETID,
                        b't' if who == 0 || who & !0o7 != 0 => {
                            w |= STICKY;
                            perm |= STICKY;
                        }
                        b's' | b't' => {}
                        b'u' | b'g' | b'o' => {
                            copied = true;
                            cmds.push(Cmd {
                                who: w,
                                op,
                                spec: Spec::Copy(*c as char),
                            });
                        }
                        _ => break,
                    }
                    i += 1;
                }
                if perm != 0 || x_if || (op == '=' && !copied) {
                    cmds.push(Cmd {
                        who: w,
                        op,
                        spec: Spec::Bits { perm, x_if },
                    });
                }
                match b.get(i) {
                    None => return Ok(ModeSet { cmds }),
                    Some(b',') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Applies the expression to `mode` (permission and special bits).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let orig = mode & 0o7777;
        let mut m = orig;
        for c in &self.cmds {
            match &c.spec {
                Spec::Bits { perm, x_if } => {
                    let mut perm = *perm;
                    if *x_if && (orig & 0o111 != 0 || is_dir) {
                        perm |= 0o111;
                    }
                    let bits = if c.who != 0 { c.who & perm } else { perm };
                    match c.op {
                        '+' => m |= bits,
                        '-' => m &= !bits,
                        _ => {
                            m &= !(if c.who != 0 { c.who } else { STANDARD });
                            m |= bits;
                        }
                    }
                }
                Spec::Copy(from) => {
                    let shift = match from {
                        'u' => 6,
                        'g' => 3,
                        _ => 0,
                    };
                    let value = (m >> shift) & 0o7;
                    for (class, sh) in [(0o700, 6), (0o070, 3), (0o007, 0)] {
                        if c.who != 0 && c.who & class == 0 {
                            continue;
                        }
                        match c.op {
                            '+' => m |= value << sh,
                            '-' => m &= !(value << sh),
                            _ => m = (m & !(0o7 << sh)) | (value << sh),
                        }
                    }
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(s: &str, m: u32, dir: bool) -> u32 {
        ModeSet::parse(s).unwrap().apply(m, dir)
    }

    #[test]
    fn symbolic() {
        assert_eq!(ap("u=rwx,g=rx,o=", 0o644, false), 0o750);
        assert_eq!(ap("u+x,g-w", 0o664, false), 0o744);
        assert_eq!(ap("+x", 0o644, false), 0o755);
        assert_eq!(ap("a=rX", 0o644, false), 0o444);
        assert_eq!(ap("a=rX", 0o700, true), 0o555);
        assert_eq!(ap("a=rX", 0o744, false), 0o555);
        assert_eq!(ap("go=u", 0o640, false), 0o666);
        assert_eq!(ap("u+s", 0o755, false), 0o4755);
        assert_eq!(ap("+t", 0o755, true), 0o1755);
        assert_eq!(ap("u+r-w", 0o200, false), 0o400);
        assert_eq!(ap("0751", 0o4644, false), 0o751);
        assert!(ModeSet::parse("").is_err());
        assert!(ModeSet::parse("u*x").is_err());
        assert!(ModeSet::parse("99").is_err());
    }
}
