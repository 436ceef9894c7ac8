//! The model's tensor list, written once. Every form of the weights (views into the GGUF bytes,
//! the f32 reference's copies, the GPU's buffers, the CPU backend's quantised views) is a
//! [`Weights<W>`] of some `W`, made from the file's views with [`Weights::map`]; a new tensor or
//! architecture changes [`Role`] and these two structs, nothing else.

use crate::model::ModelConfig;

/// What a tensor of a block is for; also its GGUF name suffix and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl Role {
    pub const ALL: [Role; 9] = [Role::AttnNorm, Role::Q, Role::K, Role::V, Role::O, Role::FfnNorm, Role::Gate, Role::Up, Role::Down];

    /// The llama.cpp name between `blk.N.` and `.weight`.
    pub fn gguf_suffix(self) -> &'static str {
        match self {
            Role::AttnNorm => "attn_norm",
            Role::Q => "attn_q",
            Role::K => "attn_k",
            Role::V => "attn_v",
            Role::O => "attn_output",
            Role::FfnNorm => "ffn_norm",
            Role::Gate => "ffn_gate",
            Role::Up => "ffn_up",
            Role::Down => "ffn_down",
        }
    }

    /// RMSNorm weight vectors (kept as f32 by every backend) rather than matrices.
    pub fn is_norm(self) -> bool {
        matches!(self, Role::AttnNorm | Role::FfnNorm)
    }

    /// (rows, cols) of this tensor for `cfg`: rows are output features, cols the contiguous inputs.
    pub fn shape(self, cfg: &ModelConfig) -> (usize, usize) {
        let (d, q, kv, f) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        match self {
            Role::AttnNorm | Role::FfnNorm => (1, d),
            Role::Q => (q, d),
            Role::K | Role::V => (kv, d),
            Role::O => (d, q),
            Role::Gate | Role::Up => (f, d),
            Role::Down => (d, f),
        }
    }
}

/// One transformer block's tensors (shared by every repeat of the block under MobileLLM-LS).
#[derive(Debug, Clone)]
pub struct Layer<W> {
    pub attn_norm: W, // [dim]
    pub wq: W,        // [q_dim, dim]
    pub wk: W,        // [kv_dim, dim]
    pub wv: W,        // [kv_dim, dim]
    pub wo: W,        // [dim, q_dim]
    pub ffn_norm: W,  // [dim]
    pub w_gate: W,    // [ffn_dim, dim]
    pub w_up: W,      // [ffn_dim, dim]
    pub w_down: W,    // [dim, ffn_dim]
}

impl<W> Layer<W> {
    pub fn get(&self, role: Role) -> &W {
        match role {
            Role::AttnNorm => &self.attn_norm,
            Role::Q => &self.wq,
            Role::K => &self.wk,
            Role::V => &self.wv,
            Role::O => &self.wo,
            Role::FfnNorm => &self.ffn_norm,
            Role::Gate => &self.w_gate,
            Role::Up => &self.w_up,
            Role::Down => &self.w_down,
        }
    }

    pub fn get_mut(&mut self, role: Role) -> &mut W {
        match role {
            Role::AttnNorm => &mut self.attn_norm,
            Role::Q => &mut self.wq,
            Role::K => &mut self.wk,
            Role::V => &mut self.wv,
            Role::O => &mut self.wo,
            Role::FfnNorm => &mut self.ffn_norm,
            Role::Gate => &mut self.w_gate,
            Role::Up => &mut self.w_up,
            Role::Down => &mut self.w_down,
        }
    }

    /// Builds a layer by calling `f` once per role, in [`Role::ALL`] order.
    pub fn try_build<E>(mut f: impl FnMut(Role) -> Result<W, E>) -> Result<Self, E> {
        Ok(Layer {
            attn_norm: f(Role::AttnNorm)?,
            wq: f(Role::Q)?,
            wk: f(Role::K)?,
            wv: f(Role::V)?,
            wo: f(Role::O)?,
            ffn_norm: f(Role::FfnNorm)?,
            w_gate: f(Role::Gate)?,
            w_up: f(Role::Up)?,
            w_down: f(Role::Down)?,
        })
    }

    pub fn map<V, E>(&self, mut f: impl FnMut(Role, &W) -> Result<V, E>) -> Result<Layer<V>, E> {
        Layer::try_build(|role| f(role, self.get(role)))
    }

    /// (role, tensor) in [`Role::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Role, &W)> {
        Role::ALL.into_iter().map(move |r| (r, self.get(r)))
    }
}

/// Where a whole-model tensor sits: the embedding, the final norm, or the untied output matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    TokenEmbd,
    OutputNorm,
    Output,
}

impl Global {
    pub fn gguf_name(self) -> &'static str {
        match self {
            Global::TokenEmbd => "token_embd.weight",
            Global::OutputNorm => "output_norm.weight",
            Global::Output => "output.weight",
        }
    }
}

/// Every tensor of a model.
#[derive(Debug, Clone)]
pub struct Weights<W> {
    pub token_embd: W,  // [n_vocab, dim]
    pub output_norm: W, // [dim]
    /// None when tied: the logits use token_embd (one tensor, used twice).
    pub output: Option<W>, // [n_vocab, dim]
    pub layers: Vec<Layer<W>>, // n_layers unique blocks
}

/// Which tensor `map` is converting, for callers that treat norms, matrices or the embedding apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Global(Global),
    Block(usize, Role),
}

impl Slot {
    pub fn is_norm(self) -> bool {
        matches!(self, Slot::Global(Global::OutputNorm)) || matches!(self, Slot::Block(_, r) if r.is_norm())
    }

    /// (rows, cols) of the tensor in this slot for `cfg`.
    pub fn shape(self, cfg: &ModelConfig) -> (usize, usize) {
        match self {
            Slot::Block(_, role) => role.shape(cfg),
            Slot::Global(Global::OutputNorm) => (1, cfg.dim),
            Slot::Global(_) => (cfg.n_vocab, cfg.dim),
        }
    }
}

impl<W> Weights<W> {
    /// The matrix of the logits: `output`, or `token_embd` when tied.
    pub fn lm_head(&self) -> &W {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// The tensor in `slot` (None: an untied `output` of a tied model, or a block out of range).
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut W> {
        match slot {
            Slot::Global(Global::TokenEmbd) => Some(&mut self.token_embd),
            Slot::Global(Global::OutputNorm) => Some(&mut self.output_norm),
            Slot::Global(Global::Output) => self.output.as_mut(),
            Slot::Block(i, role) => self.layers.get_mut(i).map(|l| l.get_mut(role)),
        }
    }

    /// Converts every tensor with `f`, blocks in order, then the globals.
    pub fn map<V, E>(&self, mut f: impl FnMut(Slot, &W) -> Result<V, E>) -> Result<Weights<V>, E> {
        let layers = self.layers.iter().enumerate().map(|(i, l)| l.map(|role, w| f(Slot::Block(i, role), w))).collect::<Result<Vec<_>, E>>()?;
        Ok(Weights {
            token_embd: f(Slot::Global(Global::TokenEmbd), &self.token_embd)?,
            output_norm: f(Slot::Global(Global::OutputNorm), &self.output_norm)?,
            output: self.output.as_ref().map(|o| f(Slot::Global(Global::Output), o)).transpose()?,
            layers,
        })
    }

    /// Every tensor with its slot, blocks first.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &W)> {
        let blocks = self.layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |(r, w)| (Slot::Block(i, r), w)));
        let globals = [(Global::TokenEmbd, Some(&self.token_embd)), (Global::OutputNorm, Some(&self.output_norm)), (Global::Output, self.output.as_ref())];
        blocks.chain(globals.into_iter().filter_map(|(g, w)| w.map(|w| (Slot::Global(g), w))))
    }
}
