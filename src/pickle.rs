//! A pickle reader that never executes anything.
//!
//! Prefect 1 Docker storage keeps each flow as a cloudpickle inside the image. Loading it
//! would import (and run) arbitrary code, and `serde-pickle` cannot decode cloudpickle
//! streams, so this module walks the opcode stream the way `pickletools` does and rebuilds
//! an inert *skeleton*: every object the real unpickler would create by calling something
//! becomes an [`Node::Obj`] holding the callee's dotted name, its arguments and the state
//! later given by `BUILD`. Nothing is imported, called or resolved.
//!
//! From the skeleton we learn what the migration needs: the modules the flow references
//! (`GLOBAL`/`STACK_GLOBAL` and cloudpickle `subimport` calls), the registering machine's
//! `__file__`, and the state of the pickled Docker storage and run config.
//!
//! The algorithm follows the project's reference Python prototypes (`pickle_imports.py`,
//! `pickle_skeleton.py`, kept beside the repository); `tests/it/pickle_prototype.rs`
//! checks that both agree on the real Prefect 1.4.1 examples.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

/// Bounds that keep a hostile pickle from exhausting memory or time.
const MAX_NODES: usize = 4_000_000;
const MAX_MEMO: usize = 4_000_000;
const MAX_JSON_DEPTH: usize = 6;

/// Why a pickle could not be walked. Offsets are byte positions in the pickle stream.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("pickle ends early at byte {0} (truncated?)")]
    Truncated(usize),
    #[error("unknown pickle opcode 0x{op:02x} at byte {at}")]
    UnknownOpcode { op: u8, at: usize },
    #[error("pickle opcode {op} at byte {at} needs {need} stack items, found fewer")]
    StackUnderflow {
        op: &'static str,
        at: usize,
        need: usize,
    },
    #[error("pickle opcode {op} at byte {at} has no MARK to pop to")]
    NoMark { op: &'static str, at: usize },
    #[error("pickle refers to memo entry {key} at byte {at}, which was never stored")]
    MissingMemo { key: u64, at: usize },
    #[error("pickle has a malformed argument for {op} at byte {at}: {why}")]
    BadArgument {
        op: &'static str,
        at: usize,
        why: String,
    },
    #[error("pickle is too large to walk safely ({0})")]
    TooLarge(&'static str),
    #[error("pickle ends before its STOP opcode (truncated?)")]
    NoStop,
}

/// A value on the pickle stack. Compound values live in the arena and are referred to by
/// index, so memo `GET`s share them and cycles cost nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(u32),
}

/// The compound values of the skeleton.
#[derive(Debug)]
pub enum Node {
    Str(String),
    /// Raw bytes are kept only by length: code objects and buffers are of no interest.
    Bytes(usize),
    /// An integer too big for `i64`, kept by its byte length.
    BigInt(usize),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Global {
        module: String,
        name: String,
    },
    Obj(Obj),
    /// A persistent id or extension-registry reference: opaque.
    External,
}

/// An object the unpickler would have created by a call.
#[derive(Debug)]
pub struct Obj {
    pub callee: Value,
    pub args: Value,
    pub state: Option<Value>,
    pub items: Vec<Value>,
    pub entries: Vec<(Value, Value)>,
}

/// The inert rebuild of a pickle plus what was noticed while walking it.
#[derive(Debug, Default)]
pub struct Skeleton {
    pub arena: Vec<Node>,
    pub root: Option<Value>,
    /// `(module, name)` of every global the pickle loads, in first-seen order.
    pub globals: Vec<(String, String)>,
    /// Modules passed to cloudpickle's `subimport` / `dynamic_subimport`.
    pub subimports: BTreeSet<String>,
    /// `__module__` values of objects pickled by value (`<flow>`, `__main__`).
    pub by_value_modules: BTreeSet<String>,
    /// `__file__` values captured with by-value functions' globals.
    pub source_files: BTreeSet<String>,
    /// Indices of every `Obj` node, in creation order.
    pub objects: Vec<u32>,
}

/// Walk `data` and build its skeleton. Never panics, never executes.
pub fn walk(data: &[u8]) -> Result<Skeleton, PickleError> {
    Machine::new(data).run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Value>,
    sk: Skeleton,
}

fn is_subimport(module: &str, name: &str) -> bool {
    module.starts_with("cloudpickle") && matches!(name, "subimport" | "dynamic_subimport")
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
            sk: Skeleton::default(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated(self.data.len()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le_u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn le_u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn le_u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        usize::try_from(self.le_u64()?).map_err(|_| PickleError::Truncated(self.data.len()))
    }

    /// A newline-terminated argument of the text opcodes (protocol 0).
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        self.pos += nl + 1;
        Ok(&rest[..nl])
    }

    fn alloc(&mut self, node: Node) -> Result<Value, PickleError> {
        if self.sk.arena.len() >= MAX_NODES {
            return Err(PickleError::TooLarge("too many objects"));
        }
        let idx = self.sk.arena.len() as u32;
        if matches!(node, Node::Obj(_)) {
            self.sk.objects.push(idx);
        }
        self.sk.arena.push(node);
        Ok(Value::Node(idx))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self, op: &'static str, at: usize) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::StackUnderflow { op, at, need: 1 });
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self, op: &'static str, at: usize) -> Result<Value, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::StackUnderflow { op, at, need: 1 })
    }

    fn pop_mark(&mut self, op: &'static str, at: usize) -> Result<Vec<Value>, PickleError> {
        let m = self.marks.pop().ok_or(PickleError::NoMark { op, at })?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match v {
            Value::Node(i) => match &self.sk.arena[i as usize] {
                Node::Str(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    fn memo_put(&mut self, key: u64, at: usize) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO {
            return Err(PickleError::TooLarge("memo too large"));
        }
        let v = self.top("PUT", at)?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64, at: usize) -> Result<(), PickleError> {
        let v = *self
            .memo
            .get(&key)
            .ok_or(PickleError::MissingMemo { key, at })?;
        self.push(v);
        Ok(())
    }

    fn push_str(&mut self, bytes: &[u8]) -> Result<(), PickleError> {
        let v = self.alloc(Node::Str(String::from_utf8_lossy(bytes).into_owned()))?;
        self.push(v);
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<Value, PickleError> {
        self.sk.globals.push((module.clone(), name.clone()));
        self.alloc(Node::Global { module, name })
    }

    /// Record the facts carried by a dict entry: `__module__`, `__name__` of by-value
    /// objects and `__file__` of by-value functions' globals.
    fn note_entry(&mut self, k: Value, v: Value) {
        let (Some(key), Some(val)) = (self.str_of(k), self.str_of(v)) else {
            return;
        };
        match key {
            "__module__" => {
                let val = val.to_owned();
                self.sk.by_value_modules.insert(val);
            }
            "__name__" if val.starts_with('<') => {
                let val = val.to_owned();
                self.sk.by_value_modules.insert(val);
            }
            "__file__" => {
                let val = val.to_owned();
                self.sk.source_files.insert(val);
            }
            _ => {}
        }
    }

    fn set_entries(&mut self, target: Value, pairs: Vec<(Value, Value)>) {
        for &(k, v) in &pairs {
            self.note_entry(k, v);
        }
        if let Value::Node(i) = target {
            match &mut self.sk.arena[i as usize] {
                Node::Dict(d) => d.extend(pairs),
                Node::Obj(o) => o.entries.extend(pairs),
                _ => {}
            }
        }
    }

    fn append_items(&mut self, target: Value, items: Vec<Value>) {
        if let Value::Node(i) = target {
            match &mut self.sk.arena[i as usize] {
                Node::List(l) | Node::Set(l) => l.extend(items),
                Node::Obj(o) => o.items.extend(items),
                _ => {}
            }
        }
    }

    fn call(&mut self, callee: Value, args: Value) -> Result<Value, PickleError> {
        // cloudpickle's `subimport('json')`: the module a by-value function uses.
        if let Value::Node(i) = callee
            && let Node::Global { module, name } = &self.sk.arena[i as usize]
            && is_subimport(module, name)
            && let Value::Node(a) = args
            && let Node::Tuple(t) = &self.sk.arena[a as usize]
            && let Some(&first) = t.first()
            && let Some(m) = self.str_of(first)
        {
            let m = m.to_owned();
            self.sk.subimports.insert(m);
        }
        self.alloc(Node::Obj(Obj {
            callee,
            args,
            state: None,
            items: Vec::new(),
            entries: Vec::new(),
        }))
    }

    fn bad(op: &'static str, at: usize, why: impl Into<String>) -> PickleError {
        PickleError::BadArgument {
            op,
            at,
            why: why.into(),
        }
    }

    fn run(mut self) -> Result<Skeleton, PickleError> {
        loop {
            let at = self.pos;
            let op = match self.take(1) {
                Ok(b) => b[0],
                Err(_) => return Err(PickleError::NoStop),
            };
            match op {
                b'.' => {
                    // STOP
                    self.sk.root = self.stack.last().copied();
                    return Ok(self.sk);
                }
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le_u64()?; // FRAME: a size hint only
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // POP: pops the top item, or a MARK when the stack is at one
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop("POP", at)?;
                    }
                }
                b'1' => {
                    self.pop_mark("POP_MARK", at)?;
                }
                b'2' => {
                    let v = self.top("DUP", at)?;
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' => {
                    let l = self.line()?;
                    let v = match l {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => std::str::from_utf8(l)
                            .ok()
                            .and_then(|s| s.trim().parse::<i64>().ok())
                            .map(Value::Int)
                            .ok_or_else(|| Self::bad("INT", at, "not an integer"))?,
                    };
                    self.push(v);
                }
                b'J' => {
                    let v = self.le_u32()? as i32;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.le_u16()?;
                    self.push(Value::Int(v as i64));
                }
                b'L' => {
                    let l = self.line()?;
                    let s = std::str::from_utf8(l).unwrap_or("").trim_end_matches('L');
                    let v = match s.parse::<i64>() {
                        Ok(n) => Value::Int(n),
                        Err(_) => self.alloc(Node::BigInt(l.len()))?,
                    };
                    self.push(v);
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.le_u32()? as usize
                    };
                    let b = self.take(n)?;
                    let v = if n <= 8 {
                        let mut a = [0u8; 8];
                        a[..n].copy_from_slice(b);
                        if n > 0 && b[n - 1] & 0x80 != 0 {
                            for x in a.iter_mut().skip(n) {
                                *x = 0xff;
                            }
                        }
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        self.alloc(Node::BigInt(n))?
                    };
                    self.push(v);
                }
                b'F' => {
                    let l = self.line()?;
                    let f = std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or_else(|| Self::bad("FLOAT", at, "not a float"))?;
                    self.push(Value::Float(f));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)));
                }
                // strings
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                b'X' => {
                    let n = self.le_u32()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                b'V' => {
                    let l = self.line()?;
                    self.push_str(l)?;
                }
                b'S' => {
                    let l = self.line()?;
                    let l = l.trim_ascii();
                    let inner = if l.len() >= 2
                        && (l[0] == b'\'' || l[0] == b'"')
                        && l[l.len() - 1] == l[0]
                    {
                        &l[1..l.len() - 1]
                    } else {
                        return Err(Self::bad("STRING", at, "not a quoted string"));
                    };
                    self.push_str(inner)?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                b'T' => {
                    let n = self.le_u32()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                // bytes
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    let v = self.alloc(Node::Bytes(n))?;
                    self.push(v);
                }
                b'B' => {
                    let n = self.le_u32()? as usize;
                    self.take(n)?;
                    let v = self.alloc(Node::Bytes(n))?;
                    self.push(v);
                }
                0x8e | 0x96 => {
                    let n = self.len_u64()?;
                    self.take(n)?;
                    let v = self.alloc(Node::Bytes(n))?;
                    self.push(v);
                }
                0x97 => {
                    let v = self.alloc(Node::Bytes(0))?; // NEXT_BUFFER (out-of-band)
                    self.push(v);
                }
                0x98 => {} // READONLY_BUFFER: no change for us
                // containers
                b']' => {
                    let v = self.alloc(Node::List(Vec::new()))?;
                    self.push(v);
                }
                b'l' => {
                    let items = self.pop_mark("LIST", at)?;
                    let v = self.alloc(Node::List(items))?;
                    self.push(v);
                }
                b'a' => {
                    let item = self.pop("APPEND", at)?;
                    let t = self.top("APPEND", at)?;
                    self.append_items(t, vec![item]);
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS", at)?;
                    let t = self.top("APPENDS", at)?;
                    self.append_items(t, items);
                }
                b')' => {
                    let v = self.alloc(Node::Tuple(Vec::new()))?;
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark("TUPLE", at)?;
                    let v = self.alloc(Node::Tuple(items))?;
                    self.push(v);
                }
                0x85..=0x87 => {
                    let k = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + k {
                        return Err(PickleError::StackUnderflow {
                            op: "TUPLEn",
                            at,
                            need: k,
                        });
                    }
                    let items = self.stack.split_off(self.stack.len() - k);
                    let v = self.alloc(Node::Tuple(items))?;
                    self.push(v);
                }
                b'}' => {
                    let v = self.alloc(Node::Dict(Vec::new()))?;
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark("DICT", at)?;
                    let pairs = pairs_of(items);
                    let v = self.alloc(Node::Dict(Vec::new()))?;
                    self.set_entries(v, pairs);
                    self.push(v);
                }
                b's' => {
                    let v = self.pop("SETITEM", at)?;
                    let k = self.pop("SETITEM", at)?;
                    let t = self.top("SETITEM", at)?;
                    self.set_entries(t, vec![(k, v)]);
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS", at)?;
                    let t = self.top("SETITEMS", at)?;
                    self.set_entries(t, pairs_of(items));
                }
                0x8f => {
                    let v = self.alloc(Node::Set(Vec::new()))?;
                    self.push(v);
                }
                0x90 => {
                    let items = self.pop_mark("ADDITEMS", at)?;
                    let t = self.top("ADDITEMS", at)?;
                    self.append_items(t, items);
                }
                0x91 => {
                    let items = self.pop_mark("FROZENSET", at)?;
                    let v = self.alloc(Node::Set(items))?;
                    self.push(v);
                }
                // globals and calls
                b'c' => {
                    let module = String::from_utf8_lossy(self.line()?).into_owned();
                    let name = String::from_utf8_lossy(self.line()?).into_owned();
                    let v = self.global(module, name)?;
                    self.push(v);
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL", at)?;
                    let module = self.pop("STACK_GLOBAL", at)?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(Self::bad(
                            "STACK_GLOBAL",
                            at,
                            "module and name must be strings",
                        ));
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    let v = self.global(m, n)?;
                    self.push(v);
                }
                b'R' => {
                    let args = self.pop("REDUCE", at)?;
                    let callee = self.pop("REDUCE", at)?;
                    let v = self.call(callee, args)?;
                    self.push(v);
                }
                0x81 => {
                    let args = self.pop("NEWOBJ", at)?;
                    let cls = self.pop("NEWOBJ", at)?;
                    let v = self.call(cls, args)?;
                    self.push(v);
                }
                0x92 => {
                    let kwargs = self.pop("NEWOBJ_EX", at)?;
                    let args = self.pop("NEWOBJ_EX", at)?;
                    let cls = self.pop("NEWOBJ_EX", at)?;
                    let both = self.alloc(Node::Tuple(vec![args, kwargs]))?;
                    let v = self.call(cls, both)?;
                    self.push(v);
                }
                b'o' => {
                    let mut items = self.pop_mark("OBJ", at)?;
                    if items.is_empty() {
                        return Err(PickleError::StackUnderflow {
                            op: "OBJ",
                            at,
                            need: 1,
                        });
                    }
                    let cls = items.remove(0);
                    let args = self.alloc(Node::Tuple(items))?;
                    let v = self.call(cls, args)?;
                    self.push(v);
                }
                b'i' => {
                    let module = String::from_utf8_lossy(self.line()?).into_owned();
                    let name = String::from_utf8_lossy(self.line()?).into_owned();
                    let items = self.pop_mark("INST", at)?;
                    let cls = self.global(module, name)?;
                    let args = self.alloc(Node::Tuple(items))?;
                    let v = self.call(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop("BUILD", at)?;
                    let t = self.top("BUILD", at)?;
                    if let Value::Node(i) = t
                        && let Node::Obj(o) = &mut self.sk.arena[i as usize]
                    {
                        o.state = Some(state);
                    }
                }
                b'P' => {
                    self.line()?;
                    let v = self.alloc(Node::External)?;
                    self.push(v);
                }
                b'Q' => {
                    self.pop("BINPERSID", at)?;
                    let v = self.alloc(Node::External)?;
                    self.push(v);
                }
                0x82 => {
                    self.u8()?;
                    let v = self.alloc(Node::External)?;
                    self.push(v);
                }
                0x83 => {
                    self.le_u16()?;
                    let v = self.alloc(Node::External)?;
                    self.push(v);
                }
                0x84 => {
                    self.le_u32()?;
                    let v = self.alloc(Node::External)?;
                    self.push(v);
                }
                // memo
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key, at)?;
                }
                b'p' => {
                    let l = self.line()?;
                    let key = parse_memo_key(l).ok_or_else(|| Self::bad("PUT", at, "key"))?;
                    self.memo_put(key, at)?;
                }
                b'q' => {
                    let key = self.u8()? as u64;
                    self.memo_put(key, at)?;
                }
                b'r' => {
                    let key = self.le_u32()? as u64;
                    self.memo_put(key, at)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let key = parse_memo_key(l).ok_or_else(|| Self::bad("GET", at, "key"))?;
                    self.memo_get(key, at)?;
                }
                b'h' => {
                    let key = self.u8()? as u64;
                    self.memo_get(key, at)?;
                }
                b'j' => {
                    let key = self.le_u32()? as u64;
                    self.memo_get(key, at)?;
                }
                other => return Err(PickleError::UnknownOpcode { op: other, at }),
            }
        }
    }
}

fn parse_memo_key(l: &[u8]) -> Option<u64> {
    std::str::from_utf8(l).ok()?.trim().parse().ok()
}

fn pairs_of(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

impl Skeleton {
    /// The string held by `v`, if it is one.
    pub fn str_of(&self, v: Value) -> Option<&str> {
        match v {
            Value::Node(i) => match self.arena.get(i as usize)? {
                Node::Str(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Modules referenced by globals, sorted and deduplicated.
    pub fn global_modules(&self) -> BTreeSet<String> {
        self.globals.iter().map(|(m, _)| m.clone()).collect()
    }

    /// The dotted class of an object: the callee's name, seen through `copyreg.__newobj__`.
    pub fn class_of(&self, idx: u32) -> Option<String> {
        let Node::Obj(o) = self.arena.get(idx as usize)? else {
            return None;
        };
        let callee = self.global_name(o.callee)?;
        if callee == "copyreg.__newobj__"
            && let Value::Node(a) = o.args
            && let Some(Node::Tuple(t)) = self.arena.get(a as usize)
            && let Some(&first) = t.first()
        {
            return self.global_name(first);
        }
        Some(callee)
    }

    fn global_name(&self, v: Value) -> Option<String> {
        match v {
            Value::Node(i) => match self.arena.get(i as usize)? {
                Node::Global { module, name } => Some(format!("{module}.{name}")),
                _ => None,
            },
            _ => None,
        }
    }

    /// Look up `key` in an object's dict state (or its SETITEM entries).
    pub fn state_get(&self, idx: u32, key: &str) -> Option<Value> {
        let Node::Obj(o) = self.arena.get(idx as usize)? else {
            return None;
        };
        let mut pairs: Vec<&(Value, Value)> = o.entries.iter().collect();
        if let Some(Value::Node(s)) = o.state {
            match self.arena.get(s as usize)? {
                Node::Dict(d) => pairs.extend(d.iter()),
                // (state, slotstate) as written for objects with __slots__
                Node::Tuple(t) => {
                    for part in t {
                        if let Value::Node(p) = part
                            && let Some(Node::Dict(d)) = self.arena.get(*p as usize)
                        {
                            pairs.extend(d.iter());
                        }
                    }
                }
                _ => {}
            }
        }
        pairs
            .into_iter()
            .rev()
            .find(|(k, _)| self.str_of(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// An inert JSON picture of `v`, as `pickle_skeleton.py` prints it: nested objects show
    /// only their class, bytes only their length, and depth is bounded.
    pub fn to_json(&self, v: Value) -> Json {
        self.to_json_at(v, 0)
    }

    fn to_json_at(&self, v: Value, depth: usize) -> Json {
        if depth > MAX_JSON_DEPTH {
            return Json::String("...".into());
        }
        match v {
            Value::None => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Int(i) => Json::from(i),
            Value::Float(f) => serde_json::Number::from_f64(f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Node(i) => match &self.arena[i as usize] {
                Node::Str(s) => Json::String(s.clone()),
                Node::Bytes(n) => json_tag("__bytes__", Json::from(*n)),
                Node::BigInt(_) => Json::String("<big int>".into()),
                Node::External => Json::String("<external>".into()),
                Node::Global { module, name } => {
                    json_tag("__global__", Json::String(format!("{module}.{name}")))
                }
                Node::Obj(_) => json_tag(
                    "__class__",
                    Json::String(self.class_of(i).unwrap_or_else(|| "?".into())),
                ),
                Node::List(l) | Node::Tuple(l) | Node::Set(l) => {
                    Json::Array(l.iter().map(|x| self.to_json_at(*x, depth + 1)).collect())
                }
                Node::Dict(d) => {
                    let mut m = Map::new();
                    for (k, x) in d {
                        let key = match self.str_of(*k) {
                            Some(s) => s.to_owned(),
                            None => self.to_json_at(*k, depth + 1).to_string(),
                        };
                        m.insert(key, self.to_json_at(*x, depth + 1));
                    }
                    Json::Object(m)
                }
            },
        }
    }

    /// The JSON state of an object (its `BUILD` state, or its dict entries).
    pub fn state_json(&self, idx: u32) -> Json {
        match self.arena.get(idx as usize) {
            Some(Node::Obj(o)) => match o.state {
                Some(s) => self.to_json_at(s, 0),
                None => Json::Null,
            },
            _ => Json::Null,
        }
    }
}

fn json_tag(key: &str, v: Json) -> Json {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_4_stack_global_with_memo() {
        // pickle.dumps(collections.OrderedDict, protocol=4)
        let data = b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94.";
        let sk = walk(data).unwrap();
        assert_eq!(
            sk.globals,
            vec![("collections".into(), "OrderedDict".into())]
        );
    }

    #[test]
    fn reads_protocol_0_global() {
        // pickle.dumps(os.path.join, protocol=0)
        let data = b"cposixpath\njoin\np0\n.";
        let sk = walk(data).unwrap();
        assert_eq!(sk.globals, vec![("posixpath".into(), "join".into())]);
    }

    #[test]
    fn reports_truncation_and_garbage_without_panicking() {
        assert_eq!(
            walk(b"\x80\x04\x8c\x05ab").err(),
            Some(PickleError::Truncated(6))
        );
        assert!(matches!(
            walk(b"\xff"),
            Err(PickleError::UnknownOpcode { op: 0xff, at: 0 })
        ));
        assert!(matches!(
            walk(b"h\x07."),
            Err(PickleError::MissingMemo { .. })
        ));
        assert!(matches!(
            walk(b"R."),
            Err(PickleError::StackUnderflow { .. })
        ));
        assert_eq!(walk(b"N").err(), Some(PickleError::NoStop));
        assert!(matches!(walk(b"u."), Err(PickleError::NoMark { .. })));
    }

    #[test]
    fn finds_subimport_through_memo() {
        // STACK_GLOBAL cloudpickle.cloudpickle.subimport, memoized, then GET + 'yaml' + TUPLE1 + REDUCE
        let mut p = b"\x80\x04".to_vec();
        p.extend(b"\x8c\x17cloudpickle.cloudpickle\x94\x8c\x09subimport\x94\x93\x94");
        p.extend(b"0h\x02\x8c\x04yaml\x85R.");
        let sk = walk(&p).unwrap();
        assert!(sk.subimports.contains("yaml"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = walk(&data);
        }
    }
}
