//! P-256 arithmetic for ES256 verification, written for wasm32, and the signed-window
//! recoding both ECDSA tables use.
//!
//! Why this exists rather than `p256`'s arithmetic: `p256` 0.13 multiplies field elements in
//! 64-bit limbs with `u128` products, also on 32-bit targets, and wasm has no 64×64→128-bit
//! multiply, so every limb product is a call to `__multi3`. That was three quarters of an
//! ES256 verification in V8. Here an element is eight 32-bit words, each word product is one
//! 64-bit multiply, and the 512-bit product is reduced with the fast reduction for the NIST
//! prime `p = 2^256 − 2^224 + 2^192 + 2^96 − 1` (FIPS 186-4, D.2.3), which needs no
//! multiplication at all. Points are Jacobian and the tables' points affine, so each addition
//! of a verification is a mixed one (8 multiplications and 3 squarings).
//!
//! Everything handled is public (the key, the signature, the message), so the code is
//! variable-time. The tests check each field operation against `BigUint` and each product
//! against `p256`'s group arithmetic; `ec_verify`'s tests check every verdict against the
//! `ecdsa` crate's verifier.

/// Mask of a 32-bit word in a 64-bit one.
const WORD: u64 = 0xffff_ffff;

/// `p`, least significant word first (as the other constants).
#[rustfmt::skip]
const P: [u32; 8] = [0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0, 0, 0, 1, 0xffff_ffff];

/// `p − 2`, the exponent of inversion.
const P_MINUS_2: [u32; 8] = {
    let mut w = P;
    w[0] -= 2;
    w
};

/// The group order `n`, and `p − n`: an `x` below `p − n` may stand for `x + n` too.
#[rustfmt::skip]
const N: [u32; 8] = [
    0xfc63_2551, 0xf3b9_cac2, 0xa717_9e84, 0xbce6_faad, 0xffff_ffff, 0xffff_ffff, 0, 0xffff_ffff,
];
const P_MINUS_N: [u32; 8] = difference(P, N);

/// The curve's `b` (its `a` is −3).
#[rustfmt::skip]
const B: [u32; 8] = [
    0x27d2_604b, 0x3bce_3c3e, 0xcc53_b0f6, 0x651d_06b0, 0x7698_86bc, 0xb3eb_bd55, 0xaa3a_93e7,
    0x5ac6_35d8,
];

/// `a − b` for `a ≥ b`, at compile time.
const fn difference(a: [u32; 8], b: [u32; 8]) -> [u32; 8] {
    let mut out = [0u32; 8];
    let mut borrow = 0i64;
    let mut k = 0;
    while k < 8 {
        // Constant evaluation: an index out of range would fail the build, not a request.
        #[allow(clippy::indexing_slicing)]
        let v = a[k] as i64 - b[k] as i64 + borrow;
        #[allow(clippy::indexing_slicing)]
        {
            out[k] = v as u32;
        }
        borrow = v >> 32;
        k += 1;
    }
    out
}

/// Whether `a < b`, both least significant word first.
fn less(a: &[u32; 8], b: &[u32; 8]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// An element of the field, always fully reduced (below `p`), least significant word first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fe([u32; 8]);

impl Fe {
    pub const ZERO: Fe = Fe([0; 8]);
    pub const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0]);

    /// The element of 32 big-endian bytes; `None` when they are not below `p`.
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
        if bytes.len() != 32 {
            return None;
        }
        let mut w = [0u32; 8];
        for (word, chunk) in w.iter_mut().rev().zip(bytes.chunks_exact(4)) {
            *word = chunk.iter().fold(0, |v, &b| (v << 8) | u32::from(b));
        }
        less(&w, &P).then_some(Fe(w))
    }

    /// 32 big-endian bytes.
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.0.iter().rev()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }

    /// The value of signed words `w` (each far below 2^62 in magnitude), reduced mod `p`.
    ///
    /// Carries are taken word by word; what is left above 2^256 is folded back in as
    /// `2^256 ≡ 2^224 − 2^192 − 2^96 + 1`. From sums of a few dozen words the first fold leaves
    /// a value within 2^228 of `[0, 2^256)`, the second one inside it, so the third pass carries
    /// nothing; the loop's bound is that argument's, and a last subtraction of `p` (`2p >
    /// 2^256`) makes the result canonical.
    fn normalize(mut w: [i64; 8]) -> Fe {
        for _ in 0..4 {
            let mut carry = 0i64;
            for x in w.iter_mut() {
                *x += carry;
                carry = *x >> 32;
                *x &= WORD as i64;
            }
            if carry == 0 {
                break;
            }
            w[0] += carry;
            w[3] -= carry;
            w[6] -= carry;
            w[7] += carry;
        }
        let mut out = [0u32; 8];
        for (o, x) in out.iter_mut().zip(w) {
            *o = x as u32;
        }
        if !less(&out, &P) {
            let mut borrow = 0i64;
            for (o, p) in out.iter_mut().zip(P) {
                let v = i64::from(*o) - i64::from(p) + borrow;
                *o = v as u32;
                borrow = v >> 32;
            }
        }
        Fe(out)
    }

    /// Word-wise `a·self + b·other`, reduced (`a`, `b` small).
    fn combine(&self, a: i64, other: &Fe, b: i64) -> Fe {
        let mut w = [0i64; 8];
        for ((x, &s), &o) in w.iter_mut().zip(&self.0).zip(&other.0) {
            *x = a * i64::from(s) + b * i64::from(o);
        }
        Fe::normalize(w)
    }

    pub fn add(&self, other: &Fe) -> Fe {
        self.combine(1, other, 1)
    }

    pub fn sub(&self, other: &Fe) -> Fe {
        self.combine(1, other, -1)
    }

    pub fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// `k·self` for a small `k`.
    pub fn times(&self, k: i64) -> Fe {
        self.combine(k, &Fe::ZERO, 0)
    }

    pub fn mul(&self, other: &Fe) -> Fe {
        // Schoolbook, a row at a time: a word product plus a word plus a carry fits 64 bits.
        let mut t = [0u64; 16];
        for (i, &a) in self.0.iter().enumerate() {
            let a = u64::from(a);
            let mut carry = 0u64;
            for (t, &b) in t.iter_mut().skip(i).zip(&other.0) {
                let v = a * u64::from(b) + *t + carry;
                *t = v & WORD;
                carry = v >> 32;
            }
            if let Some(t) = t.get_mut(i + 8) {
                *t = carry;
            }
        }
        Fe::reduce(&t)
    }

    /// `self²`: each product of two different words once, doubled, plus the squares of the
    /// words (36 word products instead of 64).
    pub fn square(&self) -> Fe {
        let a = &self.0;
        let mut t = [0u64; 16];
        for (i, &x) in a.iter().enumerate() {
            let x = u64::from(x);
            let mut carry = 0u64;
            // a_i·a_j for j > i lands at i + j: from 2i + 1 on.
            for (t, &y) in t.iter_mut().skip(2 * i + 1).zip(a.iter().skip(i + 1)) {
                let v = x * u64::from(y) + *t + carry;
                *t = v & WORD;
                carry = v >> 32;
            }
            if let Some(t) = t.get_mut(i + 8) {
                *t = carry;
            }
        }
        let mut carry = 0u64;
        for t in t.iter_mut() {
            let v = (*t << 1) | carry;
            *t = v & WORD;
            carry = v >> 32;
        }
        let mut carry = 0u64;
        for (pair, &x) in t.chunks_exact_mut(2).zip(a) {
            if let [lo, hi] = pair {
                let sq = u64::from(x) * u64::from(x);
                let l = *lo + (sq & WORD) + carry;
                *lo = l & WORD;
                let h = *hi + (sq >> 32) + (l >> 32);
                *hi = h & WORD;
                carry = h >> 32;
            }
        }
        Fe::reduce(&t)
    }

    /// A 512-bit number of sixteen words, mod `p`: the sum of FIPS 186-4 D.2.3's
    /// `s1 + 2·s2 + 2·s3 + s4 + s5 − s6 − s7 − s8 − s9`, word by word.
    fn reduce(c: &[u64; 16]) -> Fe {
        let c = c.map(|v| v as i64);
        Fe::normalize([
            c[0] + c[8] + c[9] - c[11] - c[12] - c[13] - c[14],
            c[1] + c[9] + c[10] - c[12] - c[13] - c[14] - c[15],
            c[2] + c[10] + c[11] - c[13] - c[14] - c[15],
            c[3] + 2 * (c[11] + c[12]) + c[13] - c[15] - c[8] - c[9],
            c[4] + 2 * (c[12] + c[13]) + c[14] - c[9] - c[10],
            c[5] + 2 * (c[13] + c[14]) + c[15] - c[10] - c[11],
            c[6] + 3 * c[14] + 2 * c[15] + c[13] - c[8] - c[9],
            c[7] + 3 * c[15] + c[8] - c[10] - c[11] - c[12] - c[13],
        ])
    }

    /// `self^e`, `e` least significant word first.
    fn pow(&self, e: &[u32; 8]) -> Fe {
        let mut acc = Fe::ONE;
        for word in e.iter().rev() {
            for bit in (0..32).rev() {
                acc = acc.square();
                if (word >> bit) & 1 == 1 {
                    acc = acc.mul(self);
                }
            }
        }
        acc
    }

    /// `self⁻¹` (Fermat: `self^(p−2)`); zero for zero.
    pub fn invert(&self) -> Fe {
        self.pow(&P_MINUS_2)
    }
}

/// A point on the curve other than the identity, in affine coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    /// The point of big-endian coordinates; `None` unless both are below `p` and the point is
    /// on the curve (`y² = x³ − 3x + b`).
    pub fn from_be_bytes(x: &[u8], y: &[u8]) -> Option<Affine> {
        let (x, y) = (Fe::from_be_bytes(x)?, Fe::from_be_bytes(y)?);
        let rhs = x.square().mul(&x).sub(&x.times(3)).add(&Fe(B));
        (y.square() == rhs).then_some(Affine { x, y })
    }

    pub fn x(&self) -> Fe {
        self.x
    }

    pub fn y(&self) -> Fe {
        self.y
    }

    fn neg(&self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

/// A point in Jacobian coordinates, `(X/Z², Y/Z³)`; `Z = 0` is the identity.
#[derive(Debug, Clone, Copy)]
pub struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    pub const IDENTITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::ONE,
        }
    }

    /// The affine point; `None` for the identity.
    pub fn to_affine(&self) -> Option<Affine> {
        if self.is_identity() {
            return None;
        }
        let zi = self.z.invert();
        let zi2 = zi.square();
        Some(Affine {
            x: self.x.mul(&zi2),
            y: self.y.mul(&zi2.mul(&zi)),
        })
    }

    /// `2·self` ("dbl-2001-b", for `a = −3`).
    pub fn double(&self) -> Jacobian {
        if self.is_identity() || self.y.is_zero() {
            return Jacobian::IDENTITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let alpha = self.x.sub(&delta).mul(&self.x.add(&delta)).times(3);
        let x = alpha.square().sub(&beta.times(8));
        let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let y = alpha
            .mul(&beta.times(4).sub(&x))
            .sub(&gamma.square().times(8));
        Jacobian { x, y, z }
    }

    /// `self + q` for an affine `q` (the sum below with `Z₂ = 1`: "madd-2004-hmv"), doubling
    /// and the identity handled.
    pub fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_identity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        self.sum([self.x, self.y], [u2, s2], self.z)
    }

    /// `self + q` for a Jacobian `q`, doubling and the identity handled.
    pub fn add(&self, q: &Jacobian) -> Jacobian {
        if self.is_identity() {
            return *q;
        }
        if q.is_identity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = q.x.mul(&z1z1);
        let s1 = self.y.mul(&q.z).mul(&z2z2);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        self.sum([u1, s1], [u2, s2], self.z.mul(&q.z))
    }

    /// `self + q` from both brought to one scale ("add-1998-cmo-2"): `[u1, s1]` is `self`'s
    /// `X` and `Y` times `Z₂²` and `Z₂³`, `[u2, s2]` `q`'s times `Z₁²` and `Z₁³`, `z` is
    /// `Z₁·Z₂`. Equal points are doubled, opposite ones give the identity.
    fn sum(&self, [u1, s1]: [Fe; 2], [u2, s2]: [Fe; 2], z: Fe) -> Jacobian {
        let h = u2.sub(&u1);
        let r = s2.sub(&s1);
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let hh = h.square();
        let hhh = h.mul(&hh);
        let v = u1.mul(&hh);
        let x = r.square().sub(&hhh).sub(&v.times(2));
        let y = r.mul(&v.sub(&x)).sub(&s1.mul(&hhh));
        Jacobian { x, y, z: z.mul(&h) }
    }

    /// Whether `x(self) mod n` is `r` (32 big-endian bytes, below `n`), without an inversion:
    /// `x = X/Z²`, so `r·Z² = X` or, when `r + n < p`, `(r + n)·Z² = X`. False for the
    /// identity.
    pub fn x_mod_n_is(&self, r: &[u8]) -> bool {
        let Some(r) = Fe::from_be_bytes(r) else {
            return false;
        };
        if self.is_identity() || !less(&r.0, &N) {
            return false;
        }
        let z2 = self.z.square();
        r.mul(&z2) == self.x || (less(&r.0, &P_MINUS_N) && r.add(&Fe(N)).mul(&z2) == self.x)
    }
}

/// Affine points, the inverse of every `Z` found with one inversion (Montgomery's trick);
/// `None` if any is the identity.
fn batch_to_affine(points: &[Jacobian]) -> Option<Vec<Affine>> {
    if points.iter().any(Jacobian::is_identity) {
        return None;
    }
    // prefix[i] = z0·…·zi
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
    for p in points {
        acc = acc.mul(&p.z);
        prefix.push(acc);
    }
    let mut inv = acc.invert();
    let mut out = vec![
        Affine {
            x: Fe::ZERO,
            y: Fe::ZERO
        };
        points.len()
    ];
    for (i, (p, o)) in points.iter().zip(out.iter_mut()).enumerate().rev() {
        // inv = (z0·…·zi)⁻¹, so zi⁻¹ = inv·(z0·…·z(i−1)).
        let zi = match i.checked_sub(1).and_then(|j| prefix.get(j)) {
            Some(before) => inv.mul(before),
            None => inv,
        };
        inv = inv.mul(&p.z);
        let zi2 = zi.square();
        *o = Affine {
            x: p.x.mul(&zi2),
            y: p.y.mul(&zi2.mul(&zi)),
        };
    }
    Some(out)
}

/// The signed digits of a big-endian number in windows of `width` bits: `k = Σ d_i·2^(w·i)`
/// with `d_i` in `[−2^(w−1), 2^(w−1)]`. Yields `(i, |d_i|, d_i < 0)` for the non-zero digits
/// of windows `0..windows`; [`SignedDigits::exhausted`] says whether they hold all of `k`.
pub struct SignedDigits<'a> {
    be: &'a [u8],
    width: usize,
    windows: usize,
    next: usize,
    carry: usize,
}

impl<'a> SignedDigits<'a> {
    pub fn new(be: &'a [u8], width: usize, windows: usize) -> Self {
        SignedDigits {
            be,
            width,
            windows,
            next: 0,
            carry: 0,
        }
    }

    /// After the last window: whether the digits sum to the whole number (no carry left over
    /// and no bit beyond the windows).
    pub fn exhausted(&self) -> bool {
        let bits = self.be.len() * 8;
        self.carry == 0 && (self.windows * self.width..bits).all(|bit| window(self.be, bit, 1) == 0)
    }
}

impl Iterator for SignedDigits<'_> {
    type Item = (usize, usize, bool);

    fn next(&mut self) -> Option<Self::Item> {
        let half = 1usize << (self.width - 1);
        while self.next < self.windows {
            let i = self.next;
            self.next += 1;
            let v = window(self.be, i * self.width, self.width) + self.carry;
            let (magnitude, negative) = if v > half {
                self.carry = 1;
                ((1 << self.width) - v, true)
            } else {
                self.carry = 0;
                (v, false)
            };
            if magnitude != 0 {
                return Some((i, magnitude, negative));
            }
        }
        None
    }
}

/// Bits `pos..pos + width` of the big-endian number `be`, as an integer (zero past its end).
pub fn window(be: &[u8], pos: usize, width: usize) -> usize {
    (0..width).fold(0, |v, b| {
        let bit = pos + b;
        let byte = be
            .len()
            .checked_sub(1 + bit / 8)
            .and_then(|i| be.get(i))
            .copied()
            .unwrap_or(0);
        v | (usize::from((byte >> (bit % 8)) & 1) << b)
    })
}

/// `j·2^(w·i)·P` for every window `i` and `j = 1..=2^(w−1)`, window after window, affine.
pub struct Table {
    width: usize,
    points: Vec<Affine>,
}

impl Table {
    /// Windows for a 256-bit scalar: one more than `256 / width`, so that the top window
    /// absorbs the last carry of the signed recoding.
    fn windows(width: usize) -> usize {
        256 / width + 1
    }

    /// The table of `point` for windows of `width` bits (2 to 8).
    pub fn new(point: &Affine, width: usize) -> Table {
        let width = width.clamp(2, 8);
        let half = 1usize << (width - 1);
        let windows = Self::windows(width);
        let mut points = Vec::with_capacity(windows * half);
        let mut base = Jacobian::from_affine(point);
        for _ in 0..windows {
            let mut multiple = base;
            points.push(multiple);
            for _ in 1..half {
                multiple = multiple.add(&base);
                points.push(multiple);
            }
            // half·base doubled: the next window's base, 2^w·base.
            base = multiple.double();
        }
        // No entry is the identity: each is j·2^(w·i)·P with 0 < j·2^(w·i) < n.
        let points = batch_to_affine(&points).unwrap_or_default();
        Table { width, points }
    }

    /// A table that covers no number: every sum made with it is refused.
    pub fn empty() -> Table {
        Table {
            width: 2,
            points: Vec::new(),
        }
    }

    /// The bytes the table holds.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<Affine>()
    }

    /// Adds `k·P` to `acc` (`k` big-endian, 32 bytes); `false` (and `acc` meaningless) only if
    /// the table does not cover `k`, which its construction rules out.
    pub fn add_multiple(&self, acc: &mut Jacobian, k: &[u8]) -> bool {
        let half = 1usize << (self.width - 1);
        let mut digits = SignedDigits::new(k, self.width, Self::windows(self.width));
        for (i, magnitude, negative) in digits.by_ref() {
            let Some(entry) = self.points.get(i * half + magnitude - 1) else {
                return false;
            };
            *acc = if negative {
                acc.add_affine(&entry.neg())
            } else {
                acc.add_affine(entry)
            };
        }
        digits.exhausted() && k.len() == 32
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use p256::elliptic_curve::Field as _;
    use p256::elliptic_curve::group::Group as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::elliptic_curve::{PrimeField as _, ops::Reduce as _};
    use p256::{ProjectivePoint, Scalar};
    use rand::{Rng as _, SeedableRng as _};
    use rsa::BigUint;

    fn big(f: &Fe) -> BigUint {
        BigUint::from_bytes_be(&f.to_be_bytes())
    }

    fn p() -> BigUint {
        BigUint::from_bytes_be(&Fe(P).to_be_bytes())
    }

    fn fe(b: &BigUint) -> Fe {
        let bytes = b.to_bytes_be();
        let mut out = [0u8; 32];
        out[32 - bytes.len()..].copy_from_slice(&bytes);
        Fe::from_be_bytes(&out).unwrap()
    }

    /// Elements at the edges (0, 1, p − 1, words all ones or all zeros) and random ones.
    fn elements(rng: &mut rand::rngs::StdRng) -> Vec<Fe> {
        let p = p();
        let mut out: Vec<Fe> = [0u32, 1, 2, 3]
            .iter()
            .map(|&k| fe(&BigUint::from(k)))
            .chain([1u32, 2, 3].iter().map(|&k| fe(&(&p - BigUint::from(k)))))
            .collect();
        for word in 0..8 {
            let mut w = [0u32; 8];
            w[word] = 0xffff_ffff;
            out.push(fe(&(BigUint::from_bytes_be(&Fe(w).to_be_bytes()) % &p)));
            let mut w = [0xffff_ffffu32; 8];
            w[word] = 0;
            out.push(fe(&(BigUint::from_bytes_be(&Fe(w).to_be_bytes()) % &p)));
        }
        for _ in 0..60 {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes);
            out.push(fe(&(BigUint::from_bytes_be(&bytes) % &p)));
        }
        out
    }

    #[test]
    fn field_operations_agree_with_big_integers() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let p = p();
        let xs = elements(&mut rng);
        for a in &xs {
            for b in &xs {
                let (ba, bb) = (big(a), big(b));
                assert_eq!(big(&a.mul(b)), (&ba * &bb) % &p, "{a:?} · {b:?}");
                assert_eq!(big(&a.add(b)), (&ba + &bb) % &p, "{a:?} + {b:?}");
                assert_eq!(big(&a.sub(b)), (&ba + &p - &bb) % &p, "{a:?} − {b:?}");
            }
            assert_eq!(big(&a.square()), (big(a) * big(a)) % &p, "{a:?}²");
            assert_eq!(big(&a.neg()), (&p - big(a)) % &p);
            assert_eq!(big(&a.times(8)), (big(a) * 8u32) % &p);
            if !a.is_zero() {
                assert_eq!(a.mul(&a.invert()), Fe::ONE, "{a:?}");
            }
        }
        assert_eq!(Fe::ZERO.invert(), Fe::ZERO);
    }

    /// Elements whose every word is 0, 1, all ones, p's own word or random: the shapes that
    /// stress carries and the reduction's folds.
    #[test]
    fn products_of_edgy_words_agree_with_big_integers() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let p = p();
        let mut edgy = || {
            let mut w = [0u32; 8];
            for (k, word) in w.iter_mut().enumerate() {
                *word = match rng.gen_range(0..5) {
                    0 => 0,
                    1 => 1,
                    2 => 0xffff_ffff,
                    3 => P[k],
                    _ => rng.r#gen(),
                };
            }
            fe(&(BigUint::from_bytes_be(&Fe(w).to_be_bytes()) % &p))
        };
        for _ in 0..20_000 {
            let (a, b) = (edgy(), edgy());
            let (ba, bb) = (big(&a), big(&b));
            assert_eq!(big(&a.mul(&b)), (&ba * &bb) % &p, "{a:?} · {b:?}");
            assert_eq!(big(&a.square()), (&ba * &ba) % &p, "{a:?}²");
            assert_eq!(big(&a.sub(&b)), (&ba + &p - &bb) % &p, "{a:?} − {b:?}");
            assert_eq!(big(&a.add(&b)), (&ba + &bb) % &p, "{a:?} + {b:?}");
        }
    }

    #[test]
    fn bytes_at_or_above_p_are_refused() {
        let p = Fe(P).to_be_bytes();
        assert!(Fe::from_be_bytes(&p).is_none());
        assert!(Fe::from_be_bytes(&[0xff; 32]).is_none());
        assert!(Fe::from_be_bytes(&[0; 31]).is_none());
        let mut below = p;
        below[31] -= 1;
        assert_eq!(Fe::from_be_bytes(&below).unwrap().to_be_bytes(), below);
    }

    fn affine(point: &ProjectivePoint) -> Affine {
        let encoded = point.to_affine().to_encoded_point(false);
        Affine::from_be_bytes(encoded.x().unwrap(), encoded.y().unwrap()).unwrap()
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let g = affine(&ProjectivePoint::GENERATOR);
        let bumped = g.y.add(&Fe::ONE).to_be_bytes();
        assert!(Affine::from_be_bytes(&g.x.to_be_bytes(), &bumped).is_none());
    }

    #[test]
    fn group_operations_agree_with_the_p256_crate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..30 {
            let p = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
            let q = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
            let (ja, qa) = (Jacobian::from_affine(&affine(&p)), affine(&q));
            assert_eq!(ja.double().to_affine().unwrap(), affine(&p.double()));
            assert_eq!(ja.add_affine(&qa).to_affine().unwrap(), affine(&(p + q)));
            let jq = Jacobian::from_affine(&qa).double();
            assert_eq!(ja.add(&jq).to_affine().unwrap(), affine(&(p + q.double())));
            // The exceptional cases: P + P, P + (−P), and the identity on either side.
            assert_eq!(
                ja.add_affine(&affine(&p)).to_affine(),
                Some(affine(&p.double()))
            );
            assert!(ja.add_affine(&affine(&-p)).is_identity());
            assert!(ja.add(&Jacobian::from_affine(&affine(&-p))).is_identity());
            assert_eq!(
                ja.double().add(&ja.double()).to_affine(),
                ja.double().double().to_affine()
            );
            assert_eq!(Jacobian::IDENTITY.add_affine(&qa).to_affine(), Some(qa));
            assert_eq!(ja.add(&Jacobian::IDENTITY).to_affine(), Some(affine(&p)));
            assert!(Jacobian::IDENTITY.double().is_identity());
        }
    }

    fn scalars(rng: &mut rand::rngs::StdRng) -> Vec<Scalar> {
        let mut out = vec![
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            -Scalar::ONE.double(),
            Scalar::from(16u64),
            Scalar::from(17u64),
            Scalar::from(u64::MAX),
        ];
        for fill in [0x0fu8, 0x10, 0x1f, 0x11, 0xf0, 0xff, 0x88, 0x7f, 0x80] {
            out.push(Scalar::reduce_bytes(&[fill; 32].into()));
        }
        out.extend((0..40).map(|_| Scalar::random(&mut *rng)));
        out
    }

    #[test]
    fn tables_multiply_like_the_p256_crate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let point = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
        for width in [2, 4, 5, 6, 7] {
            let table = Table::new(&affine(&point), width);
            assert_eq!(table.points.len(), Table::windows(width) << (width - 1));
            for k in scalars(&mut rng) {
                let mut sum = Jacobian::IDENTITY;
                assert!(table.add_multiple(&mut sum, &k.to_repr()));
                let want = point * k;
                if k == Scalar::ZERO {
                    assert!(sum.is_identity());
                } else {
                    assert_eq!(sum.to_affine().unwrap(), affine(&want), "width {width}");
                }
            }
        }
    }

    #[test]
    fn a_number_the_windows_do_not_hold_is_refused() {
        let table = Table::new(&affine(&ProjectivePoint::GENERATOR), 4);
        let mut sum = Jacobian::IDENTITY;
        assert!(!table.add_multiple(&mut sum, &[0xff; 33]));
        assert!(!table.add_multiple(&mut sum, &[0x01; 31]));
    }

    /// A point whose `x` is at least `n`: `x mod n` is then `x − n`, which an `r` may be.
    #[test]
    fn x_mod_n_covers_an_x_at_or_above_n() {
        let p = p();
        let n = BigUint::from_bytes_be(&Fe(N).to_be_bytes());
        let sqrt_exp = (&p + 1u32) / 4u32;
        let (x, y) = (0u32..)
            .find_map(|k| {
                let x = &n + k;
                let rhs = (&x * &x * &x + &p * 3u32 - &x * 3u32 + big(&Fe(B))) % &p;
                let y = rhs.modpow(&sqrt_exp, &p);
                ((&y * &y) % &p == rhs).then(|| (fe(&x), fe(&y)))
            })
            .unwrap();
        let point = Affine::from_be_bytes(&x.to_be_bytes(), &y.to_be_bytes()).unwrap();
        // The same point with Z = 5: (X·25, Y·125, 5).
        let z = fe(&BigUint::from(5u32));
        let j = Jacobian {
            x: x.mul(&z.square()),
            y: y.mul(&z.square().mul(&z)),
            z,
        };
        assert_eq!(j.to_affine(), Some(point));
        let r = fe(&(big(&x) - &n)).to_be_bytes();
        assert!(j.x_mod_n_is(&r));
        let mut other = r;
        other[31] ^= 1;
        assert!(!j.x_mod_n_is(&other));
        // x itself is not below n, so it is not an r.
        assert!(!j.x_mod_n_is(&x.to_be_bytes()));
        assert!(!Jacobian::IDENTITY.x_mod_n_is(&r));
        // An ordinary point: x below n stands for itself.
        let g = affine(&ProjectivePoint::GENERATOR);
        assert!(Jacobian::from_affine(&g).x_mod_n_is(&g.x.to_be_bytes()));
    }
}
