//! RSA PKCS#1 v1.5 signature verification (RS256/384/512) with the key prepared once.
//!
//! Why this exists rather than `rsa`'s verifier: in wasm there is no 64×64→128-bit multiply,
//! so bignum crates built on full-width limbs spend most of their time on carries. Measured
//! in V8 (Node 20, wasm32-wasip1) for one 2048-bit `s^65537 mod n`: `rsa` 0.9 (num-bigint-dig)
//! ~490 µs, `crypto-bigint` 0.7 with its Montgomery parameters prepared once ~170 µs, this
//! module ~70 µs. The trick is an old one: 28-bit limbs, each in a 32-bit word, whose
//! products are summed in 64 bits with plain adds, the carry taken once per column
//! (product-scanning Montgomery multiplication). Built with wasm SIMD (`simd128`, as this
//! repository's `.cargo/config.toml` builds the module), four products are made per step,
//! two per `i64x2.extmul_*_i32x4_u`; a whole RS256 verification went from about 250 µs to
//! about 155 µs with it (medians in Node's V8 on a shared two-core machine). Everything
//! handled here is public (the key, the signature, the message), so none of it needs to run
//! in constant time.
//!
//! Verification is "encode and compare" (RFC 8017 §8.2.2): the expected `EMSA-PKCS1-v1_5`
//! block is built from the digest and compared byte for byte with `s^e mod n`, so there is no
//! parser of the decrypted block to get wrong. The `rsa` crate still parses the JWK (its
//! bounds on `n` and `e`) and verifies PS256/384/512, and the tests check this module against
//! its arithmetic and against Wycheproof.

use std::borrow::Cow;
use std::convert::Infallible;

use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::BigUint;
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

/// An RSA public key with its Montgomery parameters computed once, when the key set is read.
#[derive(Clone)]
pub struct RsaKey {
    public: rsa::RsaPublicKey,
    /// The modulus length in bytes: a signature must be exactly this long.
    len: usize,
    /// `n`, big-endian, `len` bytes: a signature must be below it.
    n_be: Vec<u8>,
    e: u64,
    mont: Mont,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.public.n().bits())
            .field("e", &self.e)
            .finish()
    }
}

impl RsaKey {
    /// Prepares `public` for verification. `None` when the exponent does not fit 64 bits or
    /// the modulus is even (the `rsa` crate's own bounds refuse both before this is reached).
    pub fn new(public: rsa::RsaPublicKey) -> Option<Self> {
        let e_be = public.e().to_bytes_be();
        if e_be.len() > 8 {
            return None;
        }
        let e = e_be.iter().fold(0u64, |e, &b| (e << 8) | u64::from(b));
        let n_be = public.n().to_bytes_be();
        let mont = Mont::new(public.n())?;
        Some(RsaKey {
            len: n_be.len(),
            n_be,
            e,
            mont,
            public,
        })
    }

    pub fn public(&self) -> &rsa::RsaPublicKey {
        &self.public
    }

    /// `s^e mod n` as `len` big-endian bytes (RSAVP1, RFC 8017 §5.2.2), or `None` when
    /// `signature` is not exactly `len` bytes or is not below `n`.
    pub fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.len || signature >= self.n_be.as_slice() {
            return None;
        }
        Some(self.mont.pow(signature, self.e, self.len))
    }

    /// Checks an `RSASSA-PKCS1-v1_5` signature over `message` with `hash`.
    pub fn verify_pkcs1v15(&self, hash: RsHash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let (prefix, digest) = hash.digest_info(message);
        let t_len = prefix.len() + digest.len();
        // EM = 0x00 || 0x01 || PS (0xff, at least 8 bytes) || 0x00 || T
        let Some(ps_len) = self.len.checked_sub(t_len + 3).filter(|&n| n >= 8) else {
            return false;
        };
        let (head, rest) = em.split_at(2);
        let (ps, rest) = rest.split_at(ps_len);
        let (zero, rest) = rest.split_at(1);
        let (got_prefix, got_digest) = rest.split_at(prefix.len());
        head == [0x00, 0x01]
            && ps.iter().all(|&b| b == 0xff)
            && zero == [0x00]
            && *got_prefix == *prefix
            && got_digest == digest.as_slice()
    }
}

/// The hash of an RS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsHash {
    Sha256,
    Sha384,
    Sha512,
}

impl RsHash {
    /// The `DigestInfo` prefix (from the `rsa` crate, built from the hash's OID) and the digest.
    fn digest_info(self, message: &[u8]) -> (Box<[u8]>, Vec<u8>) {
        use rsa::Pkcs1v15Sign;
        use sha2::{Sha256, Sha384, Sha512};
        match self {
            RsHash::Sha256 => (
                Pkcs1v15Sign::new::<Sha256>().prefix,
                Sha256::digest(message).to_vec(),
            ),
            RsHash::Sha384 => (
                Pkcs1v15Sign::new::<Sha384>().prefix,
                Sha384::digest(message).to_vec(),
            ),
            RsHash::Sha512 => (
                Pkcs1v15Sign::new::<Sha512>().prefix,
                Sha512::digest(message).to_vec(),
            ),
        }
    }
}

/// RS256/384/512 for jwt-compact, over a prepared [`RsaKey`]. Verification only: there is no
/// signing key to hold, which the uninhabited `SigningKey` says in the type.
#[derive(Debug, Clone, Copy)]
pub struct Rs(pub RsHash);

/// A PKCS#1 v1.5 signature as sent; its length is checked against the key's.
#[derive(Debug, Clone)]
pub struct RsSignature(Vec<u8>);

impl AlgorithmSignature for RsSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(RsSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for Rs {
    type SigningKey = Infallible;
    type VerifyingKey = RsaKey;
    type Signature = RsSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self.0 {
            RsHash::Sha256 => "RS256",
            RsHash::Sha384 => "RS384",
            RsHash::Sha512 => "RS512",
        })
    }

    fn sign(&self, signing_key: &Infallible, _message: &[u8]) -> RsSignature {
        match *signing_key {}
    }

    fn verify_signature(&self, signature: &RsSignature, key: &RsaKey, message: &[u8]) -> bool {
        key.verify_pkcs1v15(self.0, message, &signature.0)
    }
}

/// A limb: `W` bits of a number, in a 32-bit word so that a product of two is one 64-bit
/// multiplication, and four of them one SIMD load.
type Limb = u32;

/// Montgomery arithmetic modulo an odd `n`, with `W`-bit limbs (least significant first),
/// `R = 2^(W·limbs)` and `R > 4n`, so that the results of [`Mont::mul`] on inputs
/// below `2n` stay below `2n` without a subtraction.
///
/// One column of [`Mont::mul`] sums at most `2·limbs` products of two `W`-bit limbs plus a
/// carry below `2^(64-W)`; `2·limbs·(2^W−1)² + 2^(64−W) < 2^64` is what bounds `limbs` for a
/// radix, and [`Mont::new`] picks the widest radix that holds for the modulus.
#[derive(Clone)]
struct Mont {
    radix: Radix,
    limbs: usize,
    /// `n` in limbs, and reversed (so a column's products are two forward slices).
    n: Vec<Limb>,
    n_rev: Vec<Limb>,
    /// `-n⁻¹ mod 2^W`.
    n_inv: Limb,
    /// `R² mod n`, to bring a number into Montgomery form with one multiplication.
    r2: Vec<Limb>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Radix {
    /// Up to 127 limbs: moduli up to 3,554 bits (2048 and 3072 are the common ones).
    W28,
    /// Up to 2,047 limbs: moduli up to 53,220 bits, far beyond what the `rsa` crate accepts.
    W26,
}

impl Radix {
    const fn bits(self) -> u32 {
        match self {
            Radix::W28 => 28,
            Radix::W26 => 26,
        }
    }

    const fn max_limbs(self) -> usize {
        match self {
            Radix::W28 => 127,
            Radix::W26 => 2047,
        }
    }
}

impl Mont {
    fn new(n: &BigUint) -> Option<Self> {
        let one = BigUint::from(1u8);
        if n.bits() < 2 || (n & &one) != one {
            return None;
        }
        // R > 4n: two spare bits above the modulus.
        let needed = n.bits() + 2;
        let radix = [Radix::W28, Radix::W26]
            .into_iter()
            .find(|r| needed.div_ceil(r.bits() as usize) <= r.max_limbs())?;
        let w = radix.bits() as usize;
        let limbs = needed.div_ceil(w);
        let n_limbs = to_limbs(&n.to_bytes_be(), w, limbs)?;
        let n0 = u64::from(*n_limbs.first()?);
        // Newton's iteration for n0⁻¹ mod 2^64 (each step doubles the correct low bits; n0 is
        // odd, so 1 is right to 1 bit and six steps give 64), then -n⁻¹ mod 2^W.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n_inv = (inv.wrapping_neg() & mask(w as u32)) as Limb;
        let r2 = (one << (2 * w * limbs)) % n;
        let r2 = to_limbs(&r2.to_bytes_be(), w, limbs)?;
        let n_rev = n_limbs.iter().rev().copied().collect();
        Some(Mont {
            radix,
            limbs,
            n: n_limbs,
            n_rev,
            n_inv,
            r2,
        })
    }

    /// `base^e mod n` for a big-endian `base` below `n`, as `out_len` big-endian bytes.
    fn pow(&self, base: &[u8], e: u64, out_len: usize) -> Vec<u8> {
        match self.radix {
            Radix::W28 => self.pow_w::<28>(base, e, out_len),
            Radix::W26 => self.pow_w::<26>(base, e, out_len),
        }
    }

    fn pow_w<const W: u32>(&self, base: &[u8], e: u64, out_len: usize) -> Vec<u8> {
        let l = self.limbs;
        let mut scratch = Scratch {
            rev: vec![0; l],
            u: vec![0; l],
        };
        let base = to_limbs(base, W as usize, l).unwrap_or_else(|| vec![0; l]);
        // Montgomery form of the base: base·R² / R.
        let mut x = vec![0; l];
        self.mul::<W>(&base, &self.r2, &mut x, &mut scratch);
        let mut acc = x.clone();
        let mut tmp = vec![0; l];
        // Left to right over the exponent's bits below its top one (e is public).
        let top = u64::BITS - e.leading_zeros();
        for bit in (0..top.saturating_sub(1)).rev() {
            self.mul_sq::<W, true>(&acc, &acc, &mut tmp, &mut scratch);
            std::mem::swap(&mut acc, &mut tmp);
            if (e >> bit) & 1 == 1 {
                self.mul::<W>(&acc, &x, &mut tmp, &mut scratch);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        if e == 0 {
            // x⁰ = 1, whose Montgomery form is R mod n = R²/R.
            self.mul::<W>(&self.r2, &one_limbs(l), &mut acc, &mut scratch);
        }
        // Out of Montgomery form: acc / R, which is at most n; n itself becomes 0.
        self.mul::<W>(&acc, &one_limbs(l), &mut tmp, &mut scratch);
        if !less_than(&tmp, &self.n) {
            sub_in_place(&mut tmp, &self.n, W);
        }
        from_limbs(&tmp, W as usize, out_len)
    }

    /// `out = x·y / R mod n` (below `2n` when `x` and `y` are), all `limbs` long.
    fn mul<const W: u32>(&self, x: &[Limb], y: &[Limb], out: &mut [Limb], scratch: &mut Scratch) {
        self.mul_sq::<W, false>(x, y, out, scratch);
    }

    /// [`Mont::mul`]; with `SQUARE` (and then `y` must be `x`) each column's products
    /// `x_j·x_k` are summed once for `j < k` and doubled, about half the multiplications of
    /// the `x·y` half (a column's total is the same, so the bound on `limbs` still holds).
    fn mul_sq<const W: u32, const SQUARE: bool>(
        &self,
        x: &[Limb],
        y: &[Limb],
        out: &mut [Limb],
        scratch: &mut Scratch,
    ) {
        let l = self.limbs;
        let m = mask(W);
        let Scratch { rev: y_rev, u } = scratch;
        for (d, s) in y_rev.iter_mut().zip(y.iter().rev()) {
            *d = *s;
        }
        let n0 = u64::from(self.n.first().copied().unwrap_or(1));
        let n_inv = u64::from(self.n_inv);
        let mut t: u64 = 0;
        // Low columns: each one picks the multiple of n that zeroes it.
        for i in 0..l {
            let off = l - 1 - i;
            t = t.wrapping_add(column::<SQUARE>(x, y_rev, l, i));
            t = t.wrapping_add(dot(u.get(..i), self.n_rev.get(off..l - 1)));
            let ui = t.wrapping_mul(n_inv) & m;
            if let Some(slot) = u.get_mut(i) {
                *slot = ui as Limb;
            }
            t = t.wrapping_add(ui * n0) >> W;
        }
        // High columns: the result.
        for i in l..2 * l - 1 {
            let from = i - l + 1;
            let to = 2 * l - 1 - i;
            t = t.wrapping_add(column::<SQUARE>(x, y_rev, l, i));
            t = t.wrapping_add(dot(u.get(from..), self.n_rev.get(..to)));
            if let Some(slot) = out.get_mut(i - l) {
                *slot = (t & m) as Limb;
            }
            t >>= W;
        }
        // Below 2^W: the result is below 2n < R.
        if let Some(last) = out.last_mut() {
            *last = t as Limb;
        }
    }
}

struct Scratch {
    rev: Vec<Limb>,
    u: Vec<Limb>,
}

/// Column `c` of the product of `x` (`l` limbs) and the number whose limbs reversed are
/// `y_rev`: the sum of `x_j·y_k` over `j + k = c`. With `SQUARE`, `y` is `x`.
#[inline(always)]
fn column<const SQUARE: bool>(x: &[Limb], y_rev: &[Limb], l: usize, c: usize) -> u64 {
    // j runs from `first` to `min(c, l-1)`; y_k = y_rev[l-1-k] = y_rev[l-1-c+j].
    let first = c.saturating_sub(l - 1);
    let rev_first = (l - 1 + first).saturating_sub(c);
    if SQUARE {
        // The pairs j < k (j below ⌈c/2⌉) twice, and x_{c/2}² once when c is even.
        let pairs = x
            .get(first..c.div_ceil(2))
            .map_or(0, |x| dot(Some(x), y_rev.get(rev_first..)));
        let middle = if c.is_multiple_of(2) {
            x.get(c / 2).map_or(0, |&m| u64::from(m) * u64::from(m))
        } else {
            0
        };
        pairs.wrapping_mul(2).wrapping_add(middle)
    } else {
        dot(x.get(first..=c.min(l - 1)), y_rev.get(rev_first..))
    }
}

/// `Σ a_i·b_i` over the shorter of the two (nothing when either is absent).
#[inline(always)]
fn dot(a: Option<&[Limb]>, b: Option<&[Limb]>) -> u64 {
    let (Some(a), Some(b)) = (a, b) else {
        return 0;
    };
    let n = a.len().min(b.len());
    let (a, b) = (
        a.get(..n).unwrap_or_default(),
        b.get(..n).unwrap_or_default(),
    );
    dot_same_length(a, b)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot_same_length(a: &[Limb], b: &[Limb]) -> u64 {
    a.iter().zip(b).fold(0u64, |acc, (&x, &y)| {
        acc.wrapping_add(u64::from(x) * u64::from(y))
    })
}

/// Four products per step: `i64x2.extmul_{low,high}_i32x4_u` multiply two pairs of 32-bit
/// lanes into 64-bit ones, which V8 lowers to `pmuludq`. Per lane the sum is a part of the
/// column's, so the bound that keeps a column below `2^64` holds for each.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot_same_length(a: &[Limb], b: &[Limb]) -> u64 {
    use core::arch::wasm32::{
        u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane,
        u64x2_splat, v128, v128_load,
    };
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .fold(0u64, |acc, (&x, &y)| {
            acc.wrapping_add(u64::from(x) * u64::from(y))
        });
    let mut sum = u64x2_splat(0);
    for (x, y) in a4.zip(b4) {
        // SAFETY: each chunk is four `u32`, the sixteen bytes `v128_load` reads; wasm loads
        // need no alignment.
        let (x, y) = unsafe {
            (
                v128_load(x.as_ptr().cast::<v128>()),
                v128_load(y.as_ptr().cast::<v128>()),
            )
        };
        sum = u64x2_add(sum, u64x2_extmul_low_u32x4(x, y));
        sum = u64x2_add(sum, u64x2_extmul_high_u32x4(x, y));
    }
    u64x2_extract_lane::<0>(sum)
        .wrapping_add(u64x2_extract_lane::<1>(sum))
        .wrapping_add(tail)
}

const fn mask(w: u32) -> u64 {
    (1u64 << w) - 1
}

fn one_limbs(l: usize) -> Vec<Limb> {
    let mut one = vec![0; l];
    if let Some(first) = one.first_mut() {
        *first = 1;
    }
    one
}

/// Big-endian bytes to `limbs` limbs of `w` bits; `None` when the number does not fit.
fn to_limbs(be: &[u8], w: usize, limbs: usize) -> Option<Vec<Limb>> {
    let mut out = Vec::with_capacity(limbs);
    let (mut acc, mut bits) = (0u64, 0usize);
    for &byte in be.iter().rev() {
        acc |= u64::from(byte) << bits;
        bits += 8;
        if bits >= w {
            out.push((acc & mask(w as u32)) as Limb);
            acc >>= w;
            bits -= w;
        }
    }
    if bits > 0 {
        out.push(acc as Limb);
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    if out.len() > limbs {
        return None;
    }
    out.resize(limbs, 0);
    Some(out)
}

/// Limbs of `w` bits to exactly `len` big-endian bytes (the value must fit, which it does
/// for results below `n`).
fn from_limbs(limbs: &[Limb], w: usize, len: usize) -> Vec<u8> {
    let mut le = Vec::with_capacity(len + 8);
    // At most 7 bits wait in `acc` when a limb of at most 28 bits joins them.
    let (mut acc, mut bits) = (0u64, 0usize);
    for &limb in limbs {
        acc |= u64::from(limb) << bits;
        bits += w;
        while bits >= 8 {
            le.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        le.push(acc as u8);
    }
    le.resize(len, 0);
    le.reverse();
    le
}

fn less_than(a: &[Limb], b: &[Limb]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_in_place(a: &mut [Limb], b: &[Limb], w: u32) {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        borrow = d >> 63;
        *x = (d & mask(w)) as Limb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng as _, SeedableRng as _};

    fn random_below(rng: &mut rand::rngs::StdRng, n: &BigUint) -> Vec<u8> {
        let len = n.to_bytes_be().len();
        loop {
            let mut b = vec![0u8; len];
            rng.fill(b.as_mut_slice());
            if BigUint::from_bytes_be(&b) < *n {
                return b;
            }
        }
    }

    fn odd_modulus(rng: &mut rand::rngs::StdRng, bits: usize) -> BigUint {
        let mut b = vec![0u8; bits.div_ceil(8)];
        rng.fill(b.as_mut_slice());
        let top = (bits - 1) % 8;
        b[0] &= (1u16 << (top + 1)).wrapping_sub(1) as u8;
        b[0] |= 1 << top;
        *b.last_mut().unwrap() |= 1;
        BigUint::from_bytes_be(&b)
    }

    #[test]
    fn pow_matches_the_rsa_crates_arithmetic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Both radixes, lengths that are and are not multiples of a limb, and the exponents
        // JWKS carry (3, 65537) plus awkward ones.
        for bits in [
            64, 255, 1024, 2048, 2049, 2056, 3072, 3554, 3555, 4096, 8192,
        ] {
            let n = odd_modulus(&mut rng, bits);
            let mont = Mont::new(&n).unwrap();
            assert_eq!(mont.radix == Radix::W28, bits + 2 <= 3556, "{bits}");
            let len = n.to_bytes_be().len();
            for e in [1u64, 2, 3, 17, 65537, (1 << 33) - 1, u64::MAX] {
                for base in [
                    vec![0u8],
                    vec![1u8],
                    (&n - BigUint::from(1u8)).to_bytes_be(),
                    random_below(&mut rng, &n),
                ] {
                    let want = BigUint::from_bytes_be(&base).modpow(&BigUint::from(e), &n);
                    let got = mont.pow(&base, e, len);
                    assert_eq!(got.len(), len);
                    assert_eq!(BigUint::from_bytes_be(&got), want, "bits {bits} e {e}");
                }
            }
        }
    }

    #[test]
    fn squaring_matches_multiplying_a_number_by_itself() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for bits in [64, 255, 2048, 3072, 4096] {
            let n = odd_modulus(&mut rng, bits);
            let mont = Mont::new(&n).unwrap();
            let l = mont.limbs;
            let mut scratch = Scratch {
                rev: vec![0; l],
                u: vec![0; l],
            };
            let w = mont.radix.bits();
            // Inputs up to 2n - 1, the largest a multiplication hands on.
            let two_n_less_one = (&n << 1) - BigUint::from(1u8);
            for x in [
                vec![0u8],
                two_n_less_one.to_bytes_be(),
                random_below(&mut rng, &n),
                random_below(&mut rng, &n),
            ] {
                let x = to_limbs(&x, w as usize, l).unwrap();
                let (mut sq, mut mul) = (vec![0; l], vec![0; l]);
                match mont.radix {
                    Radix::W28 => {
                        mont.mul_sq::<28, true>(&x, &x, &mut sq, &mut scratch);
                        mont.mul_sq::<28, false>(&x, &x, &mut mul, &mut scratch);
                    }
                    Radix::W26 => {
                        mont.mul_sq::<26, true>(&x, &x, &mut sq, &mut scratch);
                        mont.mul_sq::<26, false>(&x, &x, &mut mul, &mut scratch);
                    }
                }
                assert_eq!(sq, mul, "bits {bits}");
            }
        }
    }

    #[test]
    fn an_even_modulus_is_not_prepared() {
        assert!(Mont::new(&BigUint::from(1u8 << 7)).is_none());
        assert!(Mont::new(&BigUint::from(1u8)).is_none());
    }

    #[test]
    fn limb_conversions_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for w in [26usize, 28] {
            for len in [1usize, 7, 32, 256, 257] {
                let mut b = vec![0u8; len];
                rng.fill(b.as_mut_slice());
                let limbs = (len * 8).div_ceil(w);
                let l = to_limbs(&b, w, limbs).unwrap();
                assert!(l.iter().all(|&x| x < 1 << w));
                assert_eq!(from_limbs(&l, w, len), b);
                assert!(to_limbs(&[1u8; 9], w, 1).is_none());
            }
        }
    }
}
