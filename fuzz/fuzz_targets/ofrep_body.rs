//! OFREP request bodies (`{"context": {...}}`), then a flag evaluated in that context.
#![no_main]
use std::sync::OnceLock;
use vireo_core::flags::{Cohorts, Flag};

fn flag() -> &'static Flag {
    static FLAG: OnceLock<Flag> = OnceLock::new();
    FLAG.get_or_init(|| {
        Flag::parse(
            "key: f\nvariants: { on: true, off: false }\ndefaultVariant: off\n\
             rules: [ { attribute: tenant, in: [ acme ], variant: on } ]\n\
             fraction: { buckets: 100, variants: [ { variant: on, weight: 5 }, { variant: off, weight: 95 } ] }\n",
        )
        .unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = vireo_core::flags::ofrep_context(data) {
        let _ = vireo_core::flags::evaluate(flag(), &ctx, &Cohorts::default());
    }
});
