//! A GPU device lost mid-session (here destroyed on purpose, as `Model.debug_lose_device` does in
//! the browser; a driver reset or a GPU process crash looks the same to the engine): the pending
//! generation fails with Error::DeviceLost, never a hang or a panic, and so does every later call
//! on the model (sticky), while a model loaded again on a new device works.

mod common;

use std::rc::Rc;

use mobilellm_web::engine::{GenerateRequest, LoadedModel, Session, SessionOptions};
use mobilellm_web::model::synth::{synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use mobilellm_web::sampler::SamplingParams;
use mobilellm_web::Error;

fn is_lost<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::DeviceLost(_)))
}

fn describe<T: std::fmt::Debug>(r: &Result<T, Error>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({}: {e})", e.code()),
    }
}

#[test]
fn device_lost_mid_generation_is_a_typed_sticky_error() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let prompt: Vec<u32> = (1..13).collect();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), 40);
    req.ignore_eos = true;
    let model = LoadedModel::load(Rc::new(common::gpu(true)), &bytes).unwrap();
    let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: Some(128), prefill_chunk: 8 }).unwrap();

    // A first generation works.
    let ok = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(ok.tokens.len(), 40);

    // The device goes away after the third token: the pending generation fails with DeviceLost.
    let gpu = model.gpu().unwrap().clone();
    let mut seen = 0;
    let r = pollster::block_on(s.generate(&prompt, &req, &mut |_| {
        seen += 1;
        if seen == 3 {
            gpu.lose_device();
        }
    }));
    assert!(is_lost(&r), "pending generate: {}", describe(&r.map(|r| r.tokens.len())));
    assert_eq!(r.unwrap_err().code(), "DeviceLost");
    assert_eq!(seen, 3, "no token after the loss");

    // Every later call on the model fails the same way: the session, a new session, scoring.
    let r = pollster::block_on(s.generate(&[5, 6, 7], &req, &mut |_| {}));
    assert!(is_lost(&r), "next generate: {}", describe(&r.map(|r| r.tokens.len())));
    s.reset();
    let r = pollster::block_on(s.generate(&prompt, &req, &mut |_| {}));
    assert!(is_lost(&r), "generate after reset: {}", describe(&r.map(|r| r.tokens.len())));
    let r = Session::new(model.clone(), &SessionOptions { n_ctx: Some(64), prefill_chunk: 8 });
    assert!(is_lost(&r), "new session: {}", describe(&r.map(|_| ())));
    let r = pollster::block_on(s.top_logits(&prompt, 4));
    assert!(is_lost(&r), "top_logits: {}", describe(&r.map(|r| r.len())));

    // Loading the model again (a new device) works.
    let again = LoadedModel::load(Rc::new(common::gpu(true)), &bytes).unwrap();
    let mut s2 = Session::new(again, &SessionOptions { n_ctx: Some(128), prefill_chunk: 8 }).unwrap();
    let r = pollster::block_on(s2.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(r.tokens, ok.tokens, "the reloaded model generates as before");
}

#[test]
fn device_lost_between_calls_fails_the_next_call() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let model = LoadedModel::load(Rc::new(common::gpu(true)), &bytes).unwrap();
    let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: Some(64), prefill_chunk: 8 }).unwrap();
    let req = GenerateRequest::new(SamplingParams::greedy(), 4);
    pollster::block_on(s.generate(&[1, 2, 3], &req, &mut |_| {})).unwrap();
    // Lost while idle (nothing polled since): the next call, a cached-prefix continuation, fails.
    model.gpu().unwrap().lose_device();
    let r = pollster::block_on(s.generate(&[1, 2, 3, 4], &req, &mut |_| {}));
    assert!(is_lost(&r), "generate after an idle loss: {}", describe(&r.map(|r| r.tokens.len())));
    let r = pollster::block_on(s.generate(&[9], &req, &mut |_| {}));
    assert!(is_lost(&r), "and the next: {}", describe(&r.map(|r| r.tokens.len())));
}
