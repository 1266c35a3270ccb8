//! Kernel node ids. A file's node id carries its artifact generation (low 16 bits, in the top
//! 16 bits of the id), so every generation is a distinct kernel inode: the kernel refuses a new
//! passthrough backing file for an inode that still has one open, and stale page cache can only
//! ever belong to a generation nobody new will open. Catalog inode numbers stay below 2^48.

use crate::Ino;

pub(crate) const ROOT_NODE: u64 = 1;
const GEN_SHIFT: u32 = 48;
const INO_MASK: u64 = (1 << GEN_SHIFT) - 1;

#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeIds {
    root: Ino,
}

impl NodeIds {
    pub(crate) fn new(root: Ino) -> Self {
        NodeIds { root }
    }

    pub(crate) fn encode(&self, ino: Ino, generation: u64) -> u64 {
        if ino == self.root {
            ROOT_NODE
        } else {
            (ino & INO_MASK) | ((generation & 0xffff) << GEN_SHIFT)
        }
    }

    /// (catalog inode, generation modulo 2^16)
    pub(crate) fn decode(&self, node: u64) -> (Ino, u64) {
        if node == ROOT_NODE {
            (self.root, 0)
        } else {
            (node & INO_MASK, node >> GEN_SHIFT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_maps_root() {
        let ids = NodeIds::new(7);
        assert_eq!(ids.encode(7, 0), ROOT_NODE);
        assert_eq!(ids.decode(ROOT_NODE), (7, 0));
        let node = ids.encode(42, 3);
        assert_eq!(ids.decode(node), (42, 3));
        assert_ne!(ids.encode(42, 3), ids.encode(42, 4));
        assert_eq!(ids.decode(ids.encode(42, 0x1_0005)), (42, 5));
    }
}
