//! Test guest `other-world`: a component of an unrelated world (`acme:other/other@0.1.0`,
//! exporting `transform: func(x: u32) -> u32`). The host must refuse it when it type-checks a
//! deployment against `cosell:mapping/mapping-step`.

wit_bindgen::generate!({
    path: "wit",
    world: "acme:other/other@0.1.0",
});

struct Other;

impl Guest for Other {
    fn transform(x: u32) -> u32 {
        x.wrapping_mul(2).wrapping_add(1)
    }
}

export!(Other);
