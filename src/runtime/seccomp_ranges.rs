//! The system-call dispatch of a seccomp program as a tree of number ranges.
//!
//! libseccomp's program (its binary-tree mode) tests system-call numbers one by one: Podman's
//! default profile for x86_64 with its x86 and x32 sub-architectures is 1,426 classic BPF
//! instructions, of which 1,386 compare the call number. The kernel converts and JIT-compiles
//! every instruction when a container installs its filter, and then emulates the program for
//! every call number to fill its per-architecture cache: 0.28 ms of each container's start on
//! the benchmark machine. Most neighbouring numbers share an action, so the same decisions fit
//! in a tree of ranges (the default profile: 63 runs of equal action on x86_64, 114 on x86,
//! 103 on x32; 588 instructions in all, installed in 0.14 ms).
//!
//! [`rewrite`] takes libseccomp's program as it is and derives, for every architecture the
//! program names, where each call number leads: a return, or the first instruction past the
//! number tests (the checks of a rule's arguments). It then emits a range tree per
//! architecture whose leaves are those returns, or jumps into a copy of the instructions
//! reachable from those places, which run as in the original. Nothing about the profile is
//! interpreted twice: the result is the same function of (arch, nr, args), and [`rewrite`]
//! checks that on every range boundary with [`run`] before it returns anything.

use std::collections::{BTreeSet, HashMap};

use libc::sock_filter;

const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K
const NR: u32 = 0; // offsetof(struct seccomp_data, nr)
const ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
/// What the kernel accepts in one program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// How far [`dispatch`] may walk before it gives up on a program it does not understand.
const MAX_STEPS: usize = 200_000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Which field of `seccomp_data` the accumulator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Held {
    Nr,
    Arch,
}

/// Where a call number leads once its number tests are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Leaf {
    Ret(u32),
    /// the original program's instruction `pc`, reached with the accumulator holding `held`
    /// (`None` when that instruction loads the accumulator itself)
    Code {
        pc: usize,
        held: Option<Held>,
    },
}

/// Inclusive ranges of call numbers, sorted and disjoint.
type Ranges = Vec<(u32, u32)>;

fn intersect(set: &Ranges, lo: u32, hi: u32) -> Ranges {
    set.iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// The numbers of `set` for which the jump `code k` is taken, and those for which it is not;
/// `None` for a test that is not a plain comparison.
fn split(set: &Ranges, code: u16, k: u32) -> Option<(Ranges, Ranges)> {
    let below = |k: u32| match k.checked_sub(1) {
        Some(m) => intersect(set, 0, m),
        None => Vec::new(),
    };
    Some(match code {
        JEQ => {
            let mut other = below(k);
            if let Some(n) = k.checked_add(1) {
                other.extend(intersect(set, n, u32::MAX));
            }
            (intersect(set, k, k), other)
        }
        JGE => (intersect(set, k, u32::MAX), below(k)),
        JGT => match k.checked_add(1) {
            Some(n) => (intersect(set, n, u32::MAX), intersect(set, 0, k)),
            None => (Vec::new(), set.clone()),
        },
        _ => return None,
    })
}

/// Whether the conditional jump `code k` is taken for the value `v`.
fn taken(code: u16, k: u32, v: u32) -> Option<bool> {
    Some(match code {
        JEQ => v == k,
        JGT => v > k,
        JGE => v >= k,
        JSET => v & k != 0,
        _ => return None,
    })
}

fn is_load_of_accumulator(i: &sock_filter) -> bool {
    // BPF_LD (class 0) with any mode and size writes A; BPF_LDX (class 1) does not
    i.code & 0x07 == 0x00
}

/// Where each call number leads for architecture value `arch`: every number in one of the
/// returned range sets, each with its leaf. `None` when the program does something before
/// its number tests end that this rewrite does not follow.
fn dispatch(prog: &[sock_filter], arch: u32) -> Option<Vec<(Ranges, Leaf)>> {
    let mut out = Vec::new();
    let mut work = vec![(0usize, None::<Held>, vec![(0u32, u32::MAX)])];
    let mut steps = 0;
    while let Some((mut pc, mut held, mut set)) = work.pop() {
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                return None;
            }
            let i = prog.get(pc)?;
            match (i.code, held) {
                (LD_ABS, _) if i.k == NR || i.k == ARCH => {
                    held = Some(if i.k == NR { Held::Nr } else { Held::Arch });
                    pc += 1;
                }
                (RET, _) => {
                    out.push((set, Leaf::Ret(i.k)));
                    break;
                }
                (JA, _) => pc = pc.checked_add(1 + i.k as usize)?,
                (JEQ | JGT | JGE | JSET, Some(Held::Arch)) => {
                    let jump = if taken(i.code, i.k, arch)? {
                        i.jt
                    } else {
                        i.jf
                    };
                    pc += 1 + jump as usize;
                }
                (JEQ | JGT | JGE, Some(Held::Nr)) => {
                    let (yes, no) = split(&set, i.code, i.k)?;
                    if !yes.is_empty() {
                        work.push((pc + 1 + i.jt as usize, held, yes));
                    }
                    if no.is_empty() {
                        break;
                    }
                    set = no;
                    pc += 1 + i.jf as usize;
                }
                _ => {
                    // the code there either loads the accumulator itself or reads the field
                    // it holds (a program that uses it before any load is not followed)
                    let held = match (is_load_of_accumulator(i), held) {
                        (true, _) => None,
                        (false, Some(h)) => Some(h),
                        (false, None) => return None,
                    };
                    out.push((set, Leaf::Code { pc, held }));
                    break;
                }
            }
        }
    }
    Some(out)
}

/// The architecture values the program compares `arch` with (equality only; `None` for a
/// program that orders or masks them), in the order it tests them.
fn arches(prog: &[sock_filter]) -> Option<Vec<u32>> {
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut work = vec![(0usize, None::<Held>)];
    while let Some((pc, held)) = work.pop() {
        if !seen.insert((pc, held)) {
            continue;
        }
        let i = prog.get(pc)?;
        let next = |off: u8| pc + 1 + off as usize;
        match (i.code, held) {
            (LD_ABS, _) if i.k == NR => work.push((pc + 1, Some(Held::Nr))),
            (LD_ABS, _) if i.k == ARCH => work.push((pc + 1, Some(Held::Arch))),
            (JA, _) => work.push((pc.checked_add(1 + i.k as usize)?, held)),
            (JEQ, Some(Held::Arch)) => {
                if !found.contains(&i.k) {
                    found.push(i.k);
                }
                work.push((next(i.jt), held));
                work.push((next(i.jf), held));
            }
            (JGT | JGE | JSET, Some(Held::Arch)) => return None,
            (JEQ | JGT | JGE, Some(Held::Nr)) => {
                work.push((next(i.jt), held));
                work.push((next(i.jf), held));
            }
            _ => {}
        }
    }
    Some(found)
}

/// One architecture's call numbers as contiguous ranges from 0 to u32::MAX, neighbours with
/// the same leaf merged; `None` when the leaves do not cover every number exactly once.
fn runs(leaves: Vec<(Ranges, Leaf)>) -> Option<Vec<(u32, Leaf)>> {
    let mut all: Vec<(u32, u32, Leaf)> = leaves
        .into_iter()
        .flat_map(|(set, leaf)| set.into_iter().map(move |(a, b)| (a, b, leaf)))
        .collect();
    all.sort();
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let mut next = Some(0u32);
    for (a, b, leaf) in all {
        if Some(a) != next {
            return None;
        }
        if out.last().is_none_or(|&(_, l)| l != leaf) {
            out.push((a, leaf));
        }
        next = b.checked_add(1);
    }
    next.is_none().then_some(out)
}

/// An instruction of the new program whose jump target is not known yet.
enum Out {
    Insn(sock_filter),
    /// a jump to the copy of the original program's instruction `pc`
    To(usize),
    /// a jump to the start of architecture section `n`
    Section(usize),
}

/// The tree over `runs` (each the first number of a range and its leaf, ranges contiguous).
fn tree(runs: &[(u32, Leaf)], out: &mut Vec<Out>) {
    if let [(_, leaf)] = runs {
        out.push(match *leaf {
            Leaf::Ret(k) => Out::Insn(insn(RET, 0, 0, k)),
            Leaf::Code { pc, .. } => Out::To(pc),
        });
        return;
    }
    let (left, right) = runs.split_at(runs.len() / 2);
    let mut low = Vec::new();
    tree(left, &mut low);
    match u8::try_from(low.len()) {
        Ok(n) => out.push(Out::Insn(insn(JGE, n, 0, right[0].0))),
        Err(_) => {
            // too far for a conditional jump: nr >= k falls onto a jump over the low half
            out.push(Out::Insn(insn(JGE, 0, 1, right[0].0)));
            out.push(Out::Insn(insn(JA, 0, 0, low.len() as u32)));
        }
    }
    out.extend(low);
    tree(right, out);
}

/// `prog` with its call-number tests as a range tree per architecture, or `None` when the
/// program is not one this rewrite follows, the result would not be shorter, or it does not
/// decide exactly as `prog` on every range boundary.
pub fn rewrite(prog: &[sock_filter]) -> Option<Vec<sock_filter>> {
    let arches = arches(prog)?;
    // every architecture value not named by the program takes the same path
    let other = (0..=u32::MAX).find(|v| !arches.contains(v))?;
    let mut sections = Vec::new();
    for &arch in arches.iter().chain([&other]) {
        let runs = runs(dispatch(prog, arch)?)?;
        if runs.iter().any(|(_, l)| {
            matches!(
                l,
                Leaf::Code {
                    held: Some(Held::Arch),
                    ..
                }
            )
        }) {
            return None;
        }
        sections.push(runs);
    }
    // the header: load arch, jump to the section of each named value, else fall through to
    // the section of every other value
    let mut out = vec![Out::Insn(insn(LD_ABS, 0, 0, ARCH))];
    for (n, &arch) in arches.iter().enumerate() {
        out.push(Out::Insn(insn(JEQ, 0, 1, arch)));
        out.push(Out::Section(n));
    }
    let mut starts = vec![0; sections.len()];
    // the other values' section first (the fall-through), then the named ones in order
    let order: Vec<usize> = std::iter::once(arches.len())
        .chain(0..arches.len())
        .collect();
    for &n in &order {
        starts[n] = out.len();
        let runs = &sections[n];
        let needs_nr = runs.len() > 1
            || runs.iter().any(|(_, l)| {
                matches!(
                    l,
                    Leaf::Code {
                        held: Some(Held::Nr),
                        ..
                    }
                )
            });
        if needs_nr {
            out.push(Out::Insn(insn(LD_ABS, 0, 0, NR)));
        }
        tree(runs, &mut out);
    }
    // the original instructions the leaves reach, in their order, jumps renumbered
    let mut keep = BTreeSet::new();
    let mut work: Vec<usize> = sections
        .iter()
        .flatten()
        .filter_map(|(_, l)| match l {
            Leaf::Code { pc, .. } => Some(*pc),
            Leaf::Ret(_) => None,
        })
        .collect();
    while let Some(pc) = work.pop() {
        let i = prog.get(pc)?;
        if !keep.insert(pc) {
            continue;
        }
        match i.code & 0x07 {
            0x06 => {} // BPF_RET
            0x05 if i.code == JA => work.push(pc.checked_add(1 + i.k as usize)?),
            0x05 => {
                work.push(pc + 1 + i.jt as usize);
                work.push(pc + 1 + i.jf as usize);
            }
            _ => work.push(pc + 1),
        }
    }
    let base = out.len();
    let at: HashMap<usize, usize> = keep
        .iter()
        .enumerate()
        .map(|(n, &pc)| (pc, base + n))
        .collect();
    let mut prog_out: Vec<sock_filter> = Vec::with_capacity(base + keep.len());
    for (pos, o) in out.iter().enumerate() {
        prog_out.push(match *o {
            Out::Insn(i) => i,
            Out::To(pc) => insn(JA, 0, 0, (at[&pc] - pos - 1) as u32),
            Out::Section(n) => insn(JA, 0, 0, (starts[n] - pos - 1) as u32),
        });
    }
    for &pc in &keep {
        let mut i = prog[pc];
        let pos = at[&pc];
        if i.code == JA {
            i.k = (at[&(pc + 1 + i.k as usize)] - pos - 1) as u32;
        } else if i.code & 0x07 == 0x05 {
            i.jt = u8::try_from(at[&(pc + 1 + i.jt as usize)] - pos - 1).ok()?;
            i.jf = u8::try_from(at[&(pc + 1 + i.jf as usize)] - pos - 1).ok()?;
        }
        prog_out.push(i);
    }
    if prog_out.len() >= prog.len() || prog_out.len() > MAX_INSNS {
        return None;
    }
    same_decisions(prog, &prog_out, &arches, other, &sections).then_some(prog_out)
}

/// Whether `a` and `b` return the same for every architecture value, at both ends of every
/// range and just outside it, with the arguments all zero, all ones, and spread over the
/// constants `a` compares with.
fn same_decisions(
    a: &[sock_filter],
    b: &[sock_filter],
    arches: &[u32],
    other: u32,
    sections: &[Vec<(u32, Leaf)>],
) -> bool {
    let mut values: BTreeSet<u32> = a.iter().map(|i| i.k).collect();
    values.extend([0, u32::MAX]);
    let values: Vec<u32> = values.into_iter().collect();
    let mut args = vec![[0u32; 12], [u32::MAX; 12]];
    args.extend(
        (0..values.len().min(64))
            .map(|seed| std::array::from_fn(|n| values[(seed + n * 7) % values.len()])),
    );
    for (s, runs) in sections.iter().enumerate() {
        let arch = arches.get(s).copied().unwrap_or(other);
        for (r, &(lo, _)) in runs.iter().enumerate() {
            let hi = runs.get(r + 1).map_or(u32::MAX, |&(n, _)| n - 1);
            for nr in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                if args
                    .iter()
                    .any(|w| run(a, nr, arch, w) != run(b, nr, arch, w))
                {
                    return false;
                }
            }
        }
    }
    true
}

/// What a classic BPF seccomp program returns for call `nr` on `arch` with argument words
/// `args` (low and high 32 bits of each of the six arguments, in `seccomp_data`'s order;
/// the instruction pointer reads as zero). `None` for an instruction it does not know or a
/// jump out of the program.
pub fn run(prog: &[sock_filter], nr: u32, arch: u32, args: &[u32; 12]) -> Option<u32> {
    let word = |off: u32| -> Option<u32> {
        match off {
            0 => Some(nr),
            4 => Some(arch),
            8 | 12 => Some(0),
            16..=60 if off % 4 == 0 => Some(args[(off as usize - 16) / 4]),
            _ => None,
        }
    };
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let i = prog.get(pc)?;
        pc += 1;
        match i.code {
            LD_ABS => a = word(i.k)?,
            0x00 => a = i.k,                         // BPF_LD | BPF_IMM
            0x60 => a = *mem.get(i.k as usize)?,     // BPF_LD | BPF_MEM
            0x01 => x = i.k,                         // BPF_LDX | BPF_IMM
            0x61 => x = *mem.get(i.k as usize)?,     // BPF_LDX | BPF_MEM
            0x02 => *mem.get_mut(i.k as usize)? = a, // BPF_ST
            0x03 => *mem.get_mut(i.k as usize)? = x, // BPF_STX
            0x07 => x = a,                           // BPF_MISC | BPF_TAX
            0x87 => a = x,                           // BPF_MISC | BPF_TXA
            0x54 => a &= i.k,                        // BPF_ALU | BPF_AND | BPF_K
            0x44 => a |= i.k,                        // BPF_ALU | BPF_OR | BPF_K
            0x04 => a = a.wrapping_add(i.k),         // BPF_ALU | BPF_ADD | BPF_K
            0x14 => a = a.wrapping_sub(i.k),         // BPF_ALU | BPF_SUB | BPF_K
            RET => return Some(i.k),
            0x16 => return Some(a), // BPF_RET | BPF_A
            JA => pc = pc.checked_add(i.k as usize)?,
            JEQ | JGT | JGE | JSET => {
                pc += if taken(i.code, i.k, a)? { i.jt } else { i.jf } as usize;
            }
            0x1d | 0x2d | 0x3d | 0x4d => {
                // the same comparisons against X
                pc += if taken(i.code - 8, x, a)? { i.jt } else { i.jf } as usize;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_by_comparison() {
        let all = vec![(0, u32::MAX)];
        assert_eq!(
            split(&all, JEQ, 5).unwrap(),
            (vec![(5, 5)], vec![(0, 4), (6, u32::MAX)])
        );
        assert_eq!(
            split(&all, JGT, 5).unwrap(),
            (vec![(6, u32::MAX)], vec![(0, 5)])
        );
        assert_eq!(split(&all, JGE, 0).unwrap(), (all.clone(), vec![]));
        assert_eq!(split(&all, JGT, u32::MAX).unwrap(), (vec![], all.clone()));
        assert!(split(&all, JSET, 1).is_none());
    }

    /// A program with an argument check: getpid allowed, kill allowed only for signal 0,
    /// everything else EPERM, and any architecture but x86_64 killed.
    fn small() -> Vec<sock_filter> {
        vec![
            insn(LD_ABS, 0, 0, ARCH),
            insn(JEQ, 1, 0, 0xc000_003e),
            insn(RET, 0, 0, 0),
            insn(LD_ABS, 0, 0, NR),
            insn(JEQ, 3, 0, 39), // getpid
            insn(JEQ, 3, 0, 62), // kill
            insn(JEQ, 1, 0, 40),
            insn(RET, 0, 0, 0x0005_0001),
            insn(RET, 0, 0, 0x7fff_0000),
            insn(LD_ABS, 0, 0, 24), // args[1], low word
            insn(JEQ, 1, 0, 0),
            insn(RET, 0, 0, 0x0005_0001),
            insn(RET, 0, 0, 0x7fff_0000),
        ]
    }

    #[test]
    fn a_rewritten_program_decides_as_the_original() {
        // padding with number tests that all lead to the same return makes it worth it
        let mut p = small();
        let pad: Vec<sock_filter> = (100..140).map(|n| insn(JEQ, 0, 0, n)).collect();
        p.splice(4..4, pad);
        let r = rewrite(&p).expect("rewritten");
        assert!(r.len() < p.len(), "{} >= {}", r.len(), p.len());
        for arch in [0xc000_003e, 0x4000_0003, 0] {
            for nr in 0..300 {
                for sig in [0, 9] {
                    let mut args = [0u32; 12];
                    args[2] = sig;
                    assert_eq!(run(&p, nr, arch, &args), run(&r, nr, arch, &args));
                }
            }
        }
        let mut args = [0u32; 12];
        assert_eq!(run(&r, 62, 0xc000_003e, &args), Some(0x7fff_0000));
        args[2] = 9;
        assert_eq!(run(&r, 62, 0xc000_003e, &args), Some(0x0005_0001));
        assert_eq!(run(&r, 39, 0x4000_0003, &args), Some(0));
    }

    #[test]
    fn programs_it_does_not_follow_are_left_alone() {
        // an ordered comparison of the architecture
        let mut p = small();
        p[1] = insn(JGE, 1, 0, 0xc000_003e);
        assert!(rewrite(&p).is_none());
        // no gain: already as short as it gets
        assert!(rewrite(&small()).is_none());
        // a jump out of the program
        let mut p = small();
        p[4] = insn(JEQ, 200, 0, 39);
        assert!(rewrite(&p).is_none());
    }
}
