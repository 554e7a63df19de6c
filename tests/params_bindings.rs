//! The committed kernel params bindings (`csrc/zo_params.rs`) match bindgen's output for
//! `csrc/zo_params.h`. The zo-emu build regenerates them where libclang is found; elsewhere
//! this test prints why it skipped, and the build uses the committed file unchecked.

#[test]
fn committed_params_bindings_match_the_header() {
    let Some(fresh) = zo_emu::REGENERATED_PARAMS else {
        eprintln!("skipped: libclang was not found when zo-emu was built, so csrc/zo_params.rs could not be regenerated");
        return;
    };
    let committed = include_str!("../csrc/zo_params.rs");
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(committed.lines().count().min(fresh.lines().count()), |i| i)
            + 1;
        panic!(
            "csrc/zo_params.rs is stale against csrc/zo_params.h (first difference at line {line}); \
             regenerate it with: cp {} csrc/zo_params.rs",
            zo_emu::REGENERATED_PARAMS_PATH
        );
    }
    eprintln!("committed bindings match bindgen's output for csrc/zo_params.h");
}
