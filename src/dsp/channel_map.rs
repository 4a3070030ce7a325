//! Which device channel plays on which output channel: parsed from the user's text
//! ("0,1", "0,0", "2,-"), checked against the device's channel count.

/// Why a channel map is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChannelMapError(pub String);

/// Which device channel feeds each output channel (`None`: silence).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChannelMap(Vec<Option<usize>>);

impl ChannelMap {
    /// A map with one entry per output channel, each a device channel below `input_channels`.
    pub fn new(sources: Vec<Option<usize>>, input_channels: u16) -> Result<ChannelMap, ChannelMapError> {
        if sources.is_empty() || sources.len() > 64 {
            return Err(ChannelMapError(format!(
                "a channel map needs 1 to 64 outputs, not {}",
                sources.len()
            )));
        }
        if let Some(bad) = sources.iter().flatten().find(|&&c| c >= usize::from(input_channels)) {
            return Err(ChannelMapError(format!(
                "channel {bad} does not exist: the device has channels 0 to {}",
                input_channels.saturating_sub(1)
            )));
        }
        Ok(ChannelMap(sources))
    }

    /// Mono to every output; otherwise device channel `c` to output `c`, silence beyond.
    pub fn default_for(input_channels: u16, output_channels: u16) -> ChannelMap {
        let out = usize::from(output_channels.max(1));
        if input_channels <= 1 {
            return ChannelMap(vec![Some(0); out]);
        }
        ChannelMap((0..out).map(|c| (c < usize::from(input_channels)).then_some(c)).collect())
    }

    /// Parses "0,1" (left from 0, right from 1), "0,0" (channel 0 to both), "2,3", "0,-"
    /// (`-`: silence).
    pub fn parse(s: &str, input_channels: u16) -> Result<ChannelMap, ChannelMapError> {
        let sources = s
            .split(',')
            .map(|t| match t.trim() {
                "-" => Ok(None),
                t => t.parse::<usize>().map(Some).map_err(|_| {
                    ChannelMapError(format!(
                        "'{t}' in channel map '{s}' is not a channel number (0-based) or '-'"
                    ))
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        ChannelMap::new(sources, input_channels)
    }

    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.0.len()
    }

    /// The entries.
    pub fn sources(&self) -> &[Option<usize>] {
        &self.0
    }

    /// This map for a device with `n` output channels: a one-output map goes to all of
    /// them, a longer one is cut or padded with silence.
    pub fn fit(&self, n: usize) -> ChannelMap {
        if self.0.len() == 1 {
            return ChannelMap(vec![self.0[0]; n]);
        }
        ChannelMap((0..n).map(|c| self.0.get(c).copied().flatten()).collect())
    }
}
