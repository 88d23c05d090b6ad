//! ECDSA verification (ES256, ES384) with precomputed point tables.
//!
//! Why this exists rather than the `ecdsa` crate's verifier: that one computes `u1·G + u2·Q`
//! as two constant-time multiplications (256 doublings each, and a masked 16-way select per
//! window), which on `p256`'s 32-bit field arithmetic in V8 costs ~800 µs per ES256 token.
//! Verification handles nothing secret, and both points are long-lived: `G` never changes and
//! `Q` is an issuer's key, prepared once when the key set is read, while every cold token is
//! new. So both products become fixed-base lookups: for each `w`-bit window `i` a table holds
//! `j·2^(w·i)·P` (`j = 1..2^(w-1)`), a scalar is recoded into signed digits, and the
//! sum is one addition per non-zero digit, with no doubling at all: 65 + 43 additions for
//! ES256 instead of ~512 doublings, 128 additions and 1,900 masked selects. Measured in V8
//! (Node, wasm32-wasip1, `bench/micro`, both builds side by side on the same loaded machine):
//! ES256 `jwt::verify` median 2,037 µs → 540 µs, i.e. about 3.8× faster.
//!
//! P-384 uses `p384`'s own public group arithmetic (complete projective formulas). P-256 uses
//! `ec_p256`'s field and Jacobian points instead, because `p256`'s field multiplication is
//! built on `u128` products wasm does not have (ES256 in V8: 281 µs with `p256`'s arithmetic,
//! 110 µs with `ec_p256`'s, same tables, `bench/micro`). Scalars (`s⁻¹`, `u1`, `u2`) are the
//! curve crates' on both. The checks are the `ecdsa` crate's: `r` and `s` in `[1, n-1]` (a
//! high `s` is accepted, as there), the digest reduced mod `n`, the sum refused when it is the
//! identity, and `x(R) mod n == r`. The tests compare every verdict with
//! `VerifyingKey::verify`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use jwt_compact::{Algorithm, AlgorithmSignature};
use p256::elliptic_curve::generic_array::typenum::Unsigned;
use p256::elliptic_curve::group::{Curve as _, Group as _};
use p256::elliptic_curve::ops::{Invert as _, Reduce as _};
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{
    AffinePoint, CurveArithmetic, FieldBytes, FieldBytesSize, NonZeroScalar, PrimeField as _,
    ProjectivePoint, PublicKey, Scalar,
};
use sha2::Digest as _;

use crate::ec_p256::SignedDigits;

/// What the verifier needs of a curve beyond `elliptic_curve`'s generic arithmetic.
pub trait EcCurve: CurveArithmetic + Clone + std::fmt::Debug + 'static {
    /// The JOSE name of ECDSA on this curve with its hash.
    const ALG: &'static str;
    /// Bytes of one coordinate or scalar: a JOSE signature is `r || s`, twice this.
    const WIDTH: usize = <FieldBytesSize<Self> as Unsigned>::USIZE;
    /// Window width of a key's table (memory per key against additions per token).
    const KEY_WINDOW: usize;
    /// Window width of the generator's table: one per curve and VM, so it can be wider.
    const GENERATOR_WINDOW: usize;
    /// The tables' type: the curve crate's own arithmetic, or this crate's for P-256.
    type Table: PointTable<Self>;
    /// The hash of `message`, as many bytes as the scalar (so `bits2field` is the identity).
    fn digest(message: &[u8]) -> FieldBytes<Self>;
    /// The generator's table, built on first use and kept for the life of the VM.
    fn generator_table() -> &'static Self::Table;
}

/// A table of multiples of one point, from which a verification's sum is made.
pub trait PointTable<C: CurveArithmetic>: Send + Sync + Sized + 'static {
    /// The table of `point` (not the identity) for windows of `width` bits.
    fn of(point: &AffinePoint<C>, width: usize) -> Self;
    /// The bytes the table holds.
    fn bytes(&self) -> usize;
    /// Whether `x(u1·G + u2·Q) mod n == r`, with `[g, q]` the tables of `G` and `Q` and `u`
    /// the scalars `[u1, u2]`; false when the sum is the identity.
    fn sum_matches(tables: [&Self; 2], u: [&Scalar<C>; 2], r: &Scalar<C>) -> bool;
}

/// [`EcCurve`] for a curve: its JOSE name, its hash, its tables and their windows' widths.
/// A generic impl could not hold the one `static` per curve that the generator's table needs,
/// so every curve's impl is this one body.
macro_rules! ec_curve {
    (
        $curve:ty, $alg:literal, $hash:ty, $table:ty,
        key window $key:literal, generator window $generator:literal
    ) => {
        impl EcCurve for $curve {
            const ALG: &'static str = $alg;
            const KEY_WINDOW: usize = $key;
            const GENERATOR_WINDOW: usize = $generator;
            type Table = $table;

            fn digest(message: &[u8]) -> FieldBytes<Self> {
                <$hash>::digest(message)
            }

            fn generator_table() -> &'static $table {
                static G: OnceLock<$table> = OnceLock::new();
                G.get_or_init(|| {
                    let g = ProjectivePoint::<$curve>::generator().to_affine();
                    <$table>::of(&g, Self::GENERATOR_WINDOW)
                })
            }
        }
    };
}

// 52 + 43 mixed additions per token; tables of 53 KB per key and 88 KB per VM. A wider
// generator window (7: 37 additions, 152 KB) would slow the VM's first key set more than it
// saves per token.
ec_curve!(
    p256::NistP256, "ES256", sha2::Sha256, crate::ec_p256::Table,
    key window 5, generator window 6
);
// 129 + 97 additions per token; tables of 74 KB per key and 112 KB per VM.
ec_curve!(
    p384::NistP384, "ES384", sha2::Sha384, Table<p384::NistP384>,
    key window 3, generator window 4
);

impl PointTable<p256::NistP256> for crate::ec_p256::Table {
    fn of(point: &p256::AffinePoint, width: usize) -> Self {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let encoded = point.to_encoded_point(false);
        let affine = encoded
            .x()
            .zip(encoded.y())
            .and_then(|(x, y)| crate::ec_p256::Affine::from_be_bytes(x, y));
        match affine {
            Some(affine) => crate::ec_p256::Table::new(&affine, width),
            // Keys and the generator are points on the curve other than the identity, which
            // always have both coordinates; an empty table refuses every signature.
            None => crate::ec_p256::Table::empty(),
        }
    }

    fn bytes(&self) -> usize {
        crate::ec_p256::Table::bytes(self)
    }

    fn sum_matches([g, q]: [&Self; 2], [u1, u2]: [&p256::Scalar; 2], r: &p256::Scalar) -> bool {
        let mut sum = crate::ec_p256::Jacobian::IDENTITY;
        g.add_multiple(&mut sum, &u1.to_repr())
            && q.add_multiple(&mut sum, &u2.to_repr())
            && sum.x_mod_n_is(&r.to_repr())
    }
}

/// `j·2^(w·i)·P` for every window `i` and `j = 1..=2^(w-1)`, window after window.
///
/// The points stay projective: `p256` 0.13 offers no batch normalisation for its field, so
/// affine points would cost a field inversion each (~800 for a P-256 key), while a projective
/// addition costs only about one field multiplication more than a mixed one.
pub struct Table<C: CurveArithmetic> {
    width: usize,
    points: Vec<ProjectivePoint<C>>,
}

impl<C: EcCurve> Table<C> {
    /// The table of `point` for windows of `width` bits (2 to 8).
    fn new(point: ProjectivePoint<C>, width: usize) -> Self {
        let width = width.clamp(2, 8);
        let half = 1usize << (width - 1);
        let windows = Self::windows(width);
        let mut points = Vec::with_capacity(windows * half);
        let mut base = point;
        for _ in 0..windows {
            let mut multiple = base;
            points.push(multiple);
            for _ in 1..half {
                multiple += base;
                points.push(multiple);
            }
            // half·base doubled: the next window's base, 2^w·base.
            base = multiple.double();
        }
        Table { width, points }
    }

    /// Windows for a scalar below `n`: one more than `bits / width`, so that the top window,
    /// which holds fewer than `width` bits, absorbs the last carry of the signed recoding.
    fn windows(width: usize) -> usize {
        Scalar::<C>::NUM_BITS as usize / width + 1
    }

    /// Adds `k·P` to `acc`; `false` (and `acc` meaningless) only if the table does not cover
    /// `k`, which its construction rules out.
    fn add_multiple(&self, acc: &mut ProjectivePoint<C>, k: &Scalar<C>) -> bool {
        let be = k.to_repr();
        let half = 1usize << (self.width - 1);
        let mut digits = SignedDigits::new(&be, self.width, Self::windows(self.width));
        for (i, magnitude, negative) in digits.by_ref() {
            let Some(entry) = self.points.get(i * half + magnitude - 1) else {
                return false;
            };
            if negative {
                *acc -= *entry;
            } else {
                *acc += *entry;
            }
        }
        digits.exhausted()
    }
}

impl<C: EcCurve> PointTable<C> for Table<C> {
    fn of(point: &AffinePoint<C>, width: usize) -> Self {
        Table::new(ProjectivePoint::<C>::from(*point), width)
    }

    fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<ProjectivePoint<C>>()
    }

    fn sum_matches([g, q]: [&Self; 2], [u1, u2]: [&Scalar<C>; 2], r: &Scalar<C>) -> bool {
        let mut sum = ProjectivePoint::<C>::identity();
        if !g.add_multiple(&mut sum, u1) || !q.add_multiple(&mut sum, u2) {
            return false;
        }
        if bool::from(sum.is_identity()) {
            return false;
        }
        let x = sum.to_affine().x();
        Scalar::<C>::reduce_bytes(&x) == *r
    }
}

/// An EC public key with its table, prepared once when the key set is read.
pub struct EcKey<C: EcCurve> {
    public: PublicKey<C>,
    table: Arc<C::Table>,
}

// By hand: a derive would ask the table, shared here, to be `Clone` too.
impl<C: EcCurve> Clone for EcKey<C> {
    fn clone(&self) -> Self {
        EcKey {
            public: self.public,
            table: Arc::clone(&self.table),
        }
    }
}

impl<C: EcCurve> std::fmt::Debug for EcKey<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcKey")
            .field("alg", &C::ALG)
            .field("table_bytes", &self.table.bytes())
            .finish()
    }
}

impl<C: EcCurve> EcKey<C> {
    /// Prepares `public` (a point on the curve, not the identity: `PublicKey` guarantees both).
    /// Also builds the generator's table if this VM has not yet, so no token waits for it.
    pub fn new(public: PublicKey<C>) -> Self {
        let table = C::Table::of(public.as_affine(), C::KEY_WINDOW);
        let _ = C::generator_table();
        EcKey {
            public,
            table: Arc::new(table),
        }
    }

    pub fn public(&self) -> &PublicKey<C> {
        &self.public
    }

    /// Bytes of this key's table.
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Checks an ECDSA signature over `message` (hashed with the curve's JOSE hash).
    pub fn verify(&self, message: &[u8], signature: &EcSignature<C>) -> bool {
        let z = Scalar::<C>::reduce_bytes(&C::digest(message));
        let s_inv = *signature.s.invert_vartime();
        let r = *signature.r;
        let u1 = z * s_inv;
        let u2 = r * s_inv;
        C::Table::sum_matches([C::generator_table(), &self.table], [&u1, &u2], &r)
    }
}

/// A JOSE ECDSA signature, `r || s` at the curve's width (never DER), both in `[1, n-1]`.
#[derive(Clone)]
pub struct EcSignature<C: EcCurve> {
    r: NonZeroScalar<C>,
    s: NonZeroScalar<C>,
}

impl<C: EcCurve> EcSignature<C> {
    /// `None` unless `bytes` is exactly `2·WIDTH` long with `r` and `s` in `[1, n-1]`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 2 * C::WIDTH {
            return None;
        }
        let (r, s) = bytes.split_at(C::WIDTH);
        let scalar = |b: &[u8]| {
            let mut repr = FieldBytes::<C>::default();
            if repr.len() != b.len() {
                return None;
            }
            repr.iter_mut().zip(b).for_each(|(d, s)| *d = *s);
            Option::<NonZeroScalar<C>>::from(NonZeroScalar::from_repr(repr))
        };
        Some(EcSignature {
            r: scalar(r)?,
            s: scalar(s)?,
        })
    }
}

impl<C: EcCurve> AlgorithmSignature for EcSignature<C> {
    const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new(2 * C::WIDTH);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Self::from_slice(slice).ok_or_else(|| anyhow::anyhow!("r or s is not in [1, n-1]"))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        let mut bytes = self.r.to_repr().to_vec();
        bytes.extend_from_slice(&self.s.to_repr());
        Cow::Owned(bytes)
    }
}

/// ES256/ES384 for jwt-compact over a prepared [`EcKey`]; verification only, like
/// [`crate::rsa_verify::Rs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Ecdsa<C>(PhantomData<C>);

pub type Es256 = Ecdsa<p256::NistP256>;
pub type Es384 = Ecdsa<p384::NistP384>;

impl<C: EcCurve> Algorithm for Ecdsa<C> {
    type SigningKey = Infallible;
    type VerifyingKey = EcKey<C>;
    type Signature = EcSignature<C>;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(C::ALG)
    }

    fn sign(&self, signing_key: &Infallible, _message: &[u8]) -> EcSignature<C> {
        match *signing_key {}
    }

    fn verify_signature(&self, signature: &EcSignature<C>, key: &EcKey<C>, message: &[u8]) -> bool {
        key.verify(message, signature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ecdsa::hazmat::{DigestPrimitive, SignPrimitive, VerifyPrimitive};
    use ecdsa::signature::{Signer as _, Verifier as _};
    use ecdsa::{Signature, SignatureSize, SigningKey};
    // `ecdsa` 0.16 bounds a signature's size by `ArrayLength`, which generic-array 0.14
    // deprecates in favour of its 1.x, which `ecdsa` 0.16 does not use.
    #[allow(deprecated)]
    use p256::elliptic_curve::generic_array::ArrayLength;
    use p256::elliptic_curve::ops::Invert;
    use p256::elliptic_curve::subtle::CtOption;
    use p256::elliptic_curve::{AffinePoint, Field as _, PrimeCurve};
    use rand::{Rng as _, SeedableRng as _};

    fn scalars<C: EcCurve>(rng: &mut rand::rngs::StdRng) -> Vec<Scalar<C>> {
        let mut out = vec![
            Scalar::<C>::ZERO,
            Scalar::<C>::ONE,
            -Scalar::<C>::ONE,
            -Scalar::<C>::ONE.double(),
            Scalar::<C>::from(16u64),
            Scalar::<C>::from(17u64),
            Scalar::<C>::from(u64::MAX),
        ];
        // Scalars whose every window is at the recoding's edges (all 0x0f, 0x10, 0x1f, ...).
        for fill in [0x0fu8, 0x10, 0x1f, 0x11, 0xf0, 0xff, 0x88] {
            let mut bytes = FieldBytes::<C>::default();
            bytes.iter_mut().for_each(|b| *b = fill);
            out.push(Scalar::<C>::reduce_bytes(&bytes));
        }
        out.extend((0..40).map(|_| Scalar::<C>::random(&mut *rng)));
        out
    }

    fn tables_multiply_like_the_group<C: EcCurve>(seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let point = ProjectivePoint::<C>::generator() * Scalar::<C>::random(&mut rng);
        for width in [2, 4, 5, 6, 7] {
            let table = Table::<C>::new(point, width);
            for k in scalars::<C>(&mut rng) {
                let mut sum = ProjectivePoint::<C>::identity();
                assert!(table.add_multiple(&mut sum, &k));
                assert_eq!(sum, point * k, "{} width {width} k {k:?}", C::ALG);
            }
        }
        let generator = Table::<C>::new(ProjectivePoint::<C>::generator(), C::GENERATOR_WINDOW);
        for k in scalars::<C>(&mut rng) {
            let mut sum = ProjectivePoint::<C>::identity();
            assert!(generator.add_multiple(&mut sum, &k));
            assert_eq!(sum, ProjectivePoint::<C>::generator() * k);
        }
    }

    #[test]
    fn p256_tables_multiply_like_the_group() {
        tables_multiply_like_the_group::<p256::NistP256>(1);
    }

    #[test]
    fn p384_tables_multiply_like_the_group() {
        tables_multiply_like_the_group::<p384::NistP384>(2);
    }

    /// Flips one bit of `sig` (or of the message): the verdict must still be the reference's.
    fn tamper(rng: &mut rand::rngs::StdRng, bytes: &mut [u8]) {
        let i = rng.gen_range(0..bytes.len());
        bytes[i] ^= 1 << rng.gen_range(0..8);
    }

    /// Signs random messages with `keys` random keys, `messages` each: the valid signature,
    /// its high-`s` twin, a tampered signature and a tampered message must each get the
    /// verdict of the `ecdsa` crate's verifier.
    #[allow(deprecated)] // `ArrayLength`, as at its import.
    fn agrees_with_the_ecdsa_crate<C>(seed: u64, keys: usize, messages: usize)
    where
        C: EcCurve + PrimeCurve + DigestPrimitive,
        Scalar<C>: Invert<Output = CtOption<Scalar<C>>> + SignPrimitive<C>,
        AffinePoint<C>: VerifyPrimitive<C>,
        SignatureSize<C>: ArrayLength<u8>,
    {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..keys {
            let signing = SigningKey::<C>::random(&mut rng);
            let reference = *signing.verifying_key();
            let key = EcKey::new(PublicKey::<C>::from(&reference));
            for _ in 0..messages {
                let mut message = vec![0u8; rng.gen_range(0..200)];
                rng.fill(message.as_mut_slice());
                let sig: Signature<C> = signing.sign(&message);
                let mut bytes = sig.to_bytes().to_vec();
                // Both halves of s: the signer's low one and its high twin n - s.
                let high = Signature::<C>::from_scalars(sig.r(), -*sig.s()).unwrap();
                let mut cases = vec![
                    (message.clone(), bytes.clone()),
                    (message.clone(), high.to_bytes().to_vec()),
                ];
                tamper(&mut rng, &mut bytes);
                cases.push((message.clone(), bytes));
                if !message.is_empty() {
                    let mut other = message.clone();
                    tamper(&mut rng, &mut other);
                    cases.push((other, sig.to_bytes().to_vec()));
                }
                for (msg, sig) in cases {
                    let want = Signature::<C>::from_slice(&sig)
                        .is_ok_and(|s| reference.verify(&msg, &s).is_ok());
                    let got =
                        EcSignature::<C>::from_slice(&sig).is_some_and(|s| key.verify(&msg, &s));
                    assert_eq!(
                        got,
                        want,
                        "{} message {msg:02x?} signature {sig:02x?}",
                        C::ALG
                    );
                    if got {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        // The valid signatures (low and high s) verified, the tampered ones did not.
        assert_eq!(accepted, keys * messages * 2);
        assert!(refused >= keys * messages, "{refused}");
    }

    #[test]
    fn es256_agrees_with_the_ecdsa_crate_on_random_keys_and_tampering() {
        agrees_with_the_ecdsa_crate::<p256::NistP256>(3, 24, 6);
    }

    #[test]
    fn es384_agrees_with_the_ecdsa_crate_on_random_keys_and_tampering() {
        agrees_with_the_ecdsa_crate::<p384::NistP384>(4, 8, 4);
    }

    #[test]
    fn scalars_out_of_range_and_wrong_lengths_are_refused() {
        let n_be: Vec<u8> = {
            // n itself: -1 + 1 wraps to 0, so take -1 and add one to its bytes.
            let mut b = (-Scalar::<p256::NistP256>::ONE).to_repr().to_vec();
            *b.last_mut().unwrap() += 1;
            b
        };
        let one = Scalar::<p256::NistP256>::ONE.to_repr().to_vec();
        let zero = vec![0u8; 32];
        for (r, s) in [
            (&zero, &one),
            (&one, &zero),
            (&n_be, &one),
            (&one, &n_be),
            (&vec![0xff; 32], &one),
        ] {
            let sig = [r.as_slice(), s.as_slice()].concat();
            assert!(EcSignature::<p256::NistP256>::from_slice(&sig).is_none());
        }
        let ok = [one.as_slice(), one.as_slice()].concat();
        assert!(EcSignature::<p256::NistP256>::from_slice(&ok).is_some());
        assert!(EcSignature::<p256::NistP256>::from_slice(&ok[1..]).is_none());
        assert!(
            EcSignature::<p256::NistP256>::from_slice(&[ok.as_slice(), &[0]].concat()).is_none()
        );
    }

    #[test]
    fn a_forged_signature_whose_sum_is_the_identity_is_refused() {
        // With Q = G·d, pick r, s so that u1 + u2·d = 0: then R is the identity, whose x the
        // affine encoding turns into 0 — never equal to r, but refused before that anyway.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let d = Scalar::<p256::NistP256>::random(&mut rng);
        let key = EcKey::new(p256::PublicKey::from_secret_scalar(
            &NonZeroScalar::new(d).unwrap(),
        ));
        let message = b"identity";
        let z = Scalar::<p256::NistP256>::reduce_bytes(&p256::NistP256::digest(message));
        // u1 = z/s, u2 = r/s; u1 + u2·d = (z + r·d)/s = 0 ⇔ r = -z/d.
        let r = -z * d.invert().unwrap();
        let s = Scalar::<p256::NistP256>::from(7u64);
        let sig = [r.to_repr().to_vec(), s.to_repr().to_vec()].concat();
        let sig = EcSignature::<p256::NistP256>::from_slice(&sig).unwrap();
        assert!(!key.verify(message, &sig));
    }

    #[test]
    fn table_sizes_stay_modest() {
        let key = EcKey::new(p256::PublicKey::from_secret_scalar(
            &NonZeroScalar::new(Scalar::<p256::NistP256>::from(9u64)).unwrap(),
        ));
        assert!(key.table_bytes() < 64 * 1024, "{}", key.table_bytes());
        let key = EcKey::new(p384::PublicKey::from_secret_scalar(
            &NonZeroScalar::new(Scalar::<p384::NistP384>::from(9u64)).unwrap(),
        ));
        assert!(key.table_bytes() < 80 * 1024, "{}", key.table_bytes());
    }
}
