//! `poczta:plugin/message`: the `message` resource. Handles are borrowed
//! for one hook call and point at the transaction's shared
//! [`ParsedMessage`](crate::plugin::message::ParsedMessage); only what a
//! method returns is copied into the guest.

use wasmtime::component::Resource;

use crate::plugin::bindings::poczta::plugin::message::{Header, Host, HostMessage, MimePart};
use crate::plugin::message::MessageHandle;
use crate::plugin::state::PluginState;

type R<T> = wasmtime::Result<T>;

impl Host for PluginState {}

impl HostMessage for PluginState {
    fn header(&mut self, msg: Resource<MessageHandle>, name: String) -> R<Vec<String>> {
        Ok(self.table.get(&msg)?.0.header(&name))
    }

    fn header_decoded(&mut self, msg: Resource<MessageHandle>, name: String) -> R<Option<String>> {
        Ok(self.table.get(&msg)?.0.header_decoded(&name))
    }

    fn headers(&mut self, msg: Resource<MessageHandle>) -> R<Vec<Header>> {
        Ok(self
            .table
            .get(&msg)?
            .0
            .headers()
            .iter()
            .map(|h| Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect())
    }

    fn parts(&mut self, msg: Resource<MessageHandle>) -> R<Vec<MimePart>> {
        let m = &self.table.get(&msg)?.0;
        Ok(m.parts()
            .iter()
            .enumerate()
            .map(|(i, p)| MimePart {
                index: i as u32,
                content_type: p.content_type.clone(),
                filename: p.filename.clone(),
                size: m.part_size(i),
                is_attachment: p.is_attachment,
            })
            .collect())
    }

    fn part_body(&mut self, msg: Resource<MessageHandle>, index: u32) -> R<Option<Vec<u8>>> {
        Ok(self.table.get(&msg)?.0.part_body(index).map(<[u8]>::to_vec))
    }

    fn part_text(&mut self, msg: Resource<MessageHandle>, index: u32) -> R<Option<String>> {
        Ok(self.table.get(&msg)?.0.part_text(index).map(str::to_string))
    }

    fn raw(&mut self, msg: Resource<MessageHandle>, offset: u64, len: u32) -> R<Vec<u8>> {
        Ok(self.table.get(&msg)?.0.raw_slice(offset, len).to_vec())
    }

    fn size(&mut self, msg: Resource<MessageHandle>) -> R<u64> {
        Ok(self.table.get(&msg)?.0.raw().len() as u64)
    }

    fn drop(&mut self, msg: Resource<MessageHandle>) -> R<()> {
        self.table.delete(msg)?;
        Ok(())
    }
}
