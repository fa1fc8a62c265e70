//! The C math functions rbox's code calls, defined in the executable from the `libm` crate so
//! that the dynamic loader needs no libm.so: a shared library costs every exec of rbox about
//! 55 us (opening, mapping, relocating; build.rs), and a container's start pays it once per
//! rbox process. Only two are reached: `pow` (`f64::powf`, in indicatif's progress estimate)
//! and `log10` (size formatting). A symbol the executable defines is the one every reference
//! in it binds to, so `--as-needed` then drops `-lm`. A new call of another libm function
//! brings libm.so back (`readelf -d target/release/rbox | grep NEEDED` shows it): define it
//! here as well.

/// `pow(3)`.
#[allow(unsafe_code)] // no_mangle: the C symbol, with libm's signature
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `log10(3)`.
#[allow(unsafe_code)] // no_mangle: the C symbol, with libm's signature
#[no_mangle]
pub extern "C" fn log10(x: f64) -> f64 {
    libm::log10(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_functions_are_libm_s() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(0.5, -1.0), 2.0);
        assert_eq!(super::log10(1000.0), 3.0);
        assert!(super::log10(-1.0).is_nan());
        // and what f64's methods reach
        assert_eq!(10f64.powf(2.5), super::pow(10.0, 2.5));
        assert_eq!(12345f64.log10(), super::log10(12345.0));
    }
}
