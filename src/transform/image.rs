//! Images: stage 1 a JPEG at full size, stage 2 a JPEG with the longest side at most 1024 px.
//!
//! Settings were chosen by measurement against the seed's (libjpeg q45, then q20 at 768 px) on
//! the corpus: see `cargo bench --bench transforms` and docs/BENCHMARKS.md. Luma quality stays
//! at the seed's while chroma is quantised harder, which keeps fewer bytes at the same luma SSIM.
//!
//! Declared dimensions are checked against [`Limits`] before any pixel is decoded, so a header
//! claiming 40000x40000 fails fast with `Limit`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::error::ImageError;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::util::ext;
use super::{Encoding, Input, Limits, Produced, TransformError};

pub const STAGE2_MAX_SIDE: u32 = 1024;
/// JPEG cannot encode a side longer than this.
const JPEG_MAX_SIDE: u32 = 65_535;

fn map_err(format: &str, e: ImageError) -> TransformError {
    match e {
        ImageError::Limits(l) => TransformError::Limit(format!("image: {l}")),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransformError::decode(format, format!("truncated: {io}"))
        }
        other => TransformError::decode(format, other),
    }
}

fn format_hint(input: &Input<'_>) -> Option<ImageFormat> {
    ImageFormat::from_mime_type(input.format)
        .or_else(|| ImageFormat::from_extension(ext(input.name)))
}

/// Decodes the first frame with limits, EXIF orientation applied.
pub(crate) fn decode(input: &Input<'_>, limits: &Limits) -> Result<DynamicImage, TransformError> {
    let f = input.format;
    let mut reader =
        ImageReader::new(BufReader::new(File::open(input.path)?)).with_guessed_format()?;
    if reader.format().is_none() {
        match format_hint(input) {
            Some(h) => reader.set_format(h),
            None => return Err(TransformError::decode(f, "unknown image format")),
        }
    }
    let side = limits.max_image_pixels.min(u32::MAX as u64) as u32;
    let mut il = image::Limits::default();
    il.max_alloc = Some(limits.max_alloc_bytes);
    il.max_image_width = Some(side);
    il.max_image_height = Some(side);
    reader.limits(il);
    let mut decoder = match reader.into_decoder() {
        Ok(d) => d,
        Err(ImageError::Unsupported(u)) if is_tiff(&u) => return tiff_or(input.path, limits, f, u),
        Err(e) => return Err(map_err(f, e)),
    };
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(TransformError::decode(f, format!("empty image {w}x{h}")));
    }
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_image_pixels {
        return Err(TransformError::Limit(format!(
            "image {w}x{h} has {pixels} pixels, limit {}",
            limits.max_image_pixels
        )));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = match DynamicImage::from_decoder(decoder) {
        Ok(img) => img,
        Err(ImageError::Unsupported(u)) if is_tiff(&u) => tiff_or(input.path, limits, f, u)?,
        Err(e) => return Err(map_err(f, e)),
    };
    img.apply_orientation(orientation);
    Ok(img)
}

fn is_tiff(u: &image::error::UnsupportedError) -> bool {
    matches!(
        u.format_hint(),
        image::error::ImageFormatHint::Exact(ImageFormat::Tiff)
    )
}

/// The tiff fallback, reporting the original error when the fallback cannot decode either.
fn tiff_or(
    path: &Path,
    limits: &Limits,
    f: &str,
    u: image::error::UnsupportedError,
) -> Result<DynamicImage, TransformError> {
    tiff_fallback(path, limits).map_err(|e| match e {
        TransformError::Decode { reason, .. } => {
            TransformError::decode(f, format!("{u}; {reason}"))
        }
        other => other,
    })
}

/// TIFF sample layouts the image crate rejects (64-bit and float samples, planar storage):
/// decoded with the tiff crate and scaled to 8 bits.
fn tiff_fallback(path: &Path, limits: &Limits) -> Result<DynamicImage, TransformError> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;
    let bad = |e: tiff::TiffError| TransformError::decode("image/tiff", e);
    let mut tl = tiff::decoder::Limits::default();
    let cap = limits.max_alloc_bytes.min(usize::MAX as u64) as usize;
    tl.decoding_buffer_size = cap;
    tl.intermediate_buffer_size = cap;
    let mut dec = Decoder::new(BufReader::new(File::open(path)?))
        .map_err(bad)?
        .with_limits(tl);
    let (w, h) = dec.dimensions().map_err(bad)?;
    if w as u64 * h as u64 > limits.max_image_pixels {
        return Err(TransformError::Limit(format!(
            "image {w}x{h} exceeds the pixel limit"
        )));
    }
    let channels = match dec.colortype().map_err(bad)? {
        ColorType::Gray(_) => 1usize,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        ColorType::RGBA(_) => 4,
        other => {
            return Err(TransformError::decode(
                "image/tiff",
                format!("color type {other:?}"),
            ))
        }
    };
    let mut data = DecodingResult::U8(Vec::new());
    let layout = dec.read_image_to_buffer(&mut data).map_err(bad)?;
    // Samples as f64 plus the value that maps to full intensity (None: min-max scale).
    let (v, full): (Vec<f64>, Option<f64>) = match data {
        DecodingResult::U8(d) => (d.iter().map(|&x| x as f64).collect(), Some(u8::MAX as f64)),
        DecodingResult::U16(d) => (d.iter().map(|&x| x as f64).collect(), Some(u16::MAX as f64)),
        DecodingResult::U32(d) => (d.iter().map(|&x| x as f64).collect(), Some(u32::MAX as f64)),
        DecodingResult::U64(d) => (d.iter().map(|&x| x as f64).collect(), Some(u64::MAX as f64)),
        DecodingResult::I8(d) => (d.iter().map(|&x| x as f64).collect(), None),
        DecodingResult::I16(d) => (d.iter().map(|&x| x as f64).collect(), None),
        DecodingResult::I32(d) => (d.iter().map(|&x| x as f64).collect(), None),
        DecodingResult::I64(d) => (d.iter().map(|&x| x as f64).collect(), None),
        DecodingResult::F16(d) => (d.iter().map(|&x| x.to_f64()).collect(), None),
        DecodingResult::F32(d) => (d.iter().map(|&x| x as f64).collect(), None),
        DecodingResult::F64(d) => (d, None),
    };
    let px = w as usize * h as usize;
    let planar = layout.planes > 1;
    let channels = if !planar && v.len() < px * channels {
        1
    } else {
        channels
    };
    if v.len() < px * channels {
        return Err(TransformError::decode("image/tiff", "short sample buffer"));
    }
    let (lo, hi) = match full {
        Some(max) => (0.0, max),
        None => {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &x in v.iter().filter(|x| x.is_finite()) {
                lo = lo.min(x);
                hi = hi.max(x);
            }
            if lo >= 0.0 && hi <= 1.0 {
                (0.0, 1.0)
            } else {
                (lo, hi)
            }
        }
    };
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let sample = |i: usize, c: usize| -> u8 {
        let x = if planar {
            v[c * px + i]
        } else {
            v[i * channels + c]
        };
        if x.is_finite() {
            ((x - lo) * scale).round().clamp(0.0, 255.0) as u8
        } else {
            0
        }
    };
    let buf: Vec<u8> = (0..px)
        .flat_map(|i| (0..channels).map(move |c| (i, c)))
        .map(|(i, c)| sample(i, c))
        .collect();
    let short = || TransformError::decode("image/tiff", "buffer size");
    Ok(match channels {
        1 => DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, buf).ok_or_else(short)?),
        2 => {
            DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_raw(w, h, buf).ok_or_else(short)?)
        }
        3 => DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, buf).ok_or_else(short)?),
        _ => DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, buf).ok_or_else(short)?),
    })
}

/// White background under alpha; 8-bit gray stays gray, everything else becomes 8-bit RGB.
fn flatten(img: DynamicImage) -> DynamicImage {
    let blend =
        |c: u8, a: u8| -> u8 { ((c as u32 * a as u32 + 255 * (255 - a as u32) + 127) / 255) as u8 };
    let gray = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLumaA16(_)
    );
    match (gray, img.color().has_alpha()) {
        (true, false) => DynamicImage::ImageLuma8(img.into_luma8()),
        (true, true) => {
            let la = img.into_luma_alpha8();
            let (w, h) = la.dimensions();
            let out = image::GrayImage::from_fn(w, h, |x, y| {
                let p = la.get_pixel(x, y);
                image::Luma([blend(p[0], p[1])])
            });
            DynamicImage::ImageLuma8(out)
        }
        (false, false) => DynamicImage::ImageRgb8(img.into_rgb8()),
        (false, true) => {
            let rgba = img.into_rgba8();
            let (w, h) = rgba.dimensions();
            let out = image::RgbImage::from_fn(w, h, |x, y| {
                let p = rgba.get_pixel(x, y);
                image::Rgb([blend(p[0], p[3]), blend(p[1], p[3]), blend(p[2], p[3])])
            });
            DynamicImage::ImageRgb8(out)
        }
    }
}

/// Encodes a flattened image (8-bit gray or RGB) as a baseline-compatible JPEG with mozjpeg:
/// trellis quantisation, optimised Huffman tables and progressive scans, 4:2:0 chroma.
/// Gray stays one channel. mozjpeg reports errors by unwinding; [`super::apply`] catches that.
fn jpeg_bytes(img: &DynamicImage, s: JpegSetting) -> Result<Vec<u8>, TransformError> {
    let (space, pixels): (mozjpeg::ColorSpace, std::borrow::Cow<'_, [u8]>) = match img {
        DynamicImage::ImageLuma8(g) => (mozjpeg::ColorSpace::JCS_GRAYSCALE, g.as_raw().into()),
        DynamicImage::ImageRgb8(rgb) => (mozjpeg::ColorSpace::JCS_RGB, rgb.as_raw().into()),
        other => (
            mozjpeg::ColorSpace::JCS_RGB,
            other.to_rgb8().into_raw().into(),
        ),
    };
    let mut c = mozjpeg::Compress::new(space);
    c.set_size(img.width() as usize, img.height() as usize);
    if !s.trellis {
        // libjpeg-turbo's path: baseline, optimised Huffman tables. On the corpus, progressive
        // scans made these small files larger, and trellis quantisation lowered SSIM per byte.
        c.set_fastest_defaults();
        c.set_optimize_coding(true);
    }
    c.set_quality(s.quality as f32);
    let (q, cq) = (s.quality as f32, s.chroma_quality as f32);
    let (luma, chroma) = match s.tables {
        QTables::Mozjpeg => (&mozjpeg::qtable::NRobidoux, &mozjpeg::qtable::NRobidoux),
        QTables::AnnexK => (
            &mozjpeg::qtable::AnnexK_Luma,
            &mozjpeg::qtable::AnnexK_Chroma,
        ),
        QTables::MsSsim => (
            &mozjpeg::qtable::MSSSIM_Luma,
            &mozjpeg::qtable::MSSSIM_Chroma,
        ),
    };
    c.set_luma_qtable(&luma.scaled(q, q));
    c.set_chroma_qtable(&chroma.scaled(cq, cq));
    let size_hint = pixels.len() / 8;
    let mut started = c.start_compress(Vec::with_capacity(size_hint))?;
    started.write_scanlines(&pixels)?;
    Ok(started.finish()?)
}

/// Which quantisation tables mozjpeg scales by the quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QTables {
    /// mozjpeg's own default (tuned for PSNR-HVS).
    Mozjpeg,
    /// The JPEG standard's Annex K tables, as libjpeg and ImageMagick use.
    AnnexK,
    /// Tables tuned for MS-SSIM.
    MsSsim,
}

/// One JPEG rendering: luma and chroma quality, the tables, trellis quantisation and, when set,
/// the longest side allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegSetting {
    pub quality: u8,
    pub chroma_quality: u8,
    pub tables: QTables,
    pub trellis: bool,
    pub max_side: Option<u32>,
}

impl JpegSetting {
    /// Annex K tables, same quality for chroma, no trellis, full size.
    pub const fn new(quality: u8) -> Self {
        JpegSetting {
            quality,
            chroma_quality: quality,
            tables: QTables::AnnexK,
            trellis: false,
            max_side: None,
        }
    }
}

/// The defaults per stage, chosen by measurement (`cargo bench --bench transforms`).
pub const STAGE1: JpegSetting = JpegSetting {
    chroma_quality: 35,
    ..JpegSetting::new(45)
};
pub const STAGE2: JpegSetting = JpegSetting {
    chroma_quality: 15,
    max_side: Some(STAGE2_MAX_SIDE),
    ..JpegSetting::new(20)
};

/// Decodes with limits and returns the first frame, oriented and flattened (8-bit gray or RGB).
pub fn load(input: &Input<'_>, limits: &Limits) -> Result<DynamicImage, TransformError> {
    Ok(flatten(decode(input, limits)?))
}

/// Scales `img` down to the setting's longest side (never up) and encodes it.
pub fn render(
    img: &DynamicImage,
    setting: JpegSetting,
) -> Result<(Vec<u8>, u32, u32), TransformError> {
    let scaled;
    let img = match setting.max_side {
        Some(side) if img.width().max(img.height()) > side => {
            scaled = img.resize(side, side, FilterType::Triangle);
            &scaled
        }
        _ => img,
    };
    let (w, h) = (img.width(), img.height());
    if w > JPEG_MAX_SIDE || h > JPEG_MAX_SIDE {
        return Err(TransformError::Limit(format!(
            "{w}x{h} is too large for JPEG"
        )));
    }
    Ok((jpeg_bytes(img, setting)?, w, h))
}

pub(crate) fn apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
) -> Result<Produced, TransformError> {
    let setting = if target >= 2 { STAGE2 } else { STAGE1 };
    let img = load(input, limits)?;
    limits.check_time()?;
    let (bytes, w, h) = render(&img, setting)?;
    super::util::write_out(out, &bytes)?;
    Ok(Produced {
        format: "image/jpeg".to_string(),
        encoding: Encoding::Plain,
        note: format!(
            "jpeg q{}/{} {w}x{h}",
            setting.quality, setting.chroma_quality
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{apply as run, Kind};

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(body);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    }

    fn run_on(
        bytes: &[u8],
        name: &str,
        format: &str,
        target: u8,
    ) -> Result<Produced, TransformError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let input = Input {
            path: &p,
            name,
            kind: Kind::Image,
            format,
            stage: 0,
        };
        run(target, &input, &dir.path().join("out"), &Limits::default())
    }

    /// Runs the transform and decodes what it wrote.
    fn output_of(bytes: &[u8], name: &str, format: &str, target: u8) -> DynamicImage {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let input = Input {
            path: &p,
            name,
            kind: Kind::Image,
            format,
            stage: 0,
        };
        let out = dir.path().join("out");
        let prod = run(target, &input, &out, &Limits::default()).unwrap();
        assert_eq!(prod.format, "image/jpeg");
        image::load_from_memory_with_format(&std::fs::read(&out).unwrap(), ImageFormat::Jpeg)
            .unwrap()
    }

    fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, format).unwrap();
        buf.into_inner()
    }

    fn close(a: &[u8], b: &[u8], tolerance: i32) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, &y)| (x as i32 - y as i32).abs() <= tolerance)
    }

    #[test]
    fn sixteen_bit_png_becomes_an_8_bit_jpeg_of_the_same_colour() {
        let img = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            32,
            16,
            image::Rgb([65535u16, 32768, 0]),
        ));
        let out = output_of(&encoded(&img, ImageFormat::Png), "deep.png", "image/png", 1);
        assert_eq!((out.width(), out.height()), (32, 16));
        let px = out.to_rgb8().get_pixel(16, 8).0;
        assert!(close(&px, &[255, 128, 0], 12), "{px:?}");
    }

    #[test]
    fn grayscale_stays_one_channel() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_fn(64, 64, |x, _| {
            image::Luma([(x * 4) as u8])
        }));
        let out = output_of(&encoded(&img, ImageFormat::Png), "g.png", "image/png", 1);
        assert_eq!(out.color(), image::ColorType::L8);
    }

    #[test]
    fn animated_gif_keeps_its_first_frame() {
        use image::codecs::gif::GifEncoder;
        use image::{Delay, Frame, RgbaImage};
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            for colour in [[200u8, 0, 0, 255], [0, 0, 200, 255]] {
                let frame = Frame::from_parts(
                    RgbaImage::from_pixel(24, 24, image::Rgba(colour)),
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                );
                enc.encode_frame(frame).unwrap();
            }
        }
        let out = output_of(&bytes, "anim.gif", "image/gif", 1);
        let px = out.to_rgb8().get_pixel(12, 12).0;
        assert!(close(&px, &[200, 0, 0], 24), "first frame is red: {px:?}");
    }

    #[test]
    fn multipage_tiff_keeps_its_first_page() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpus/images/multipage_rgb.tif"
        );
        let bytes = std::fs::read(path).unwrap();
        let mut dec = tiff::decoder::Decoder::new(std::io::Cursor::new(&bytes)).unwrap();
        let first = dec.dimensions().unwrap();
        assert!(dec.more_images(), "the corpus file has several pages");
        let out = output_of(&bytes, "multipage_rgb.tif", "image/tiff", 1);
        assert_eq!((out.width(), out.height()), first);
    }

    #[test]
    fn cmyk_jpeg_is_converted_to_rgb() {
        // A CMYK JPEG of pure cyan (C=255, others 0) must come out cyan in RGB.
        let (w, h) = (32u16, 32u16);
        let data: Vec<u8> = (0..w as usize * h as usize)
            .flat_map(|_| [255u8, 0, 0, 0])
            .collect();
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 90)
            .encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
        let out = output_of(&bytes, "cmyk.jpg", "image/jpeg", 1);
        assert_eq!(out.color(), image::ColorType::Rgb8);
        let px = out.to_rgb8().get_pixel(16, 16).0;
        assert!(close(&px, &[0, 255, 255], 24), "cyan: {px:?}");
    }

    #[test]
    fn huge_declared_png_fails_fast_with_limit() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = 40000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&40000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        png.extend(chunk(b"IEND", &[]));
        let t = std::time::Instant::now();
        let r = run_on(&png, "big.png", "image/png", 1);
        assert!(matches!(r, Err(TransformError::Limit(_))), "{r:?}");
        assert!(t.elapsed().as_secs() < 2);
    }

    #[test]
    fn truncated_and_empty_images_are_errors() {
        for (f, mime) in [("astronaut.png", "image/png"), ("rocket.jpg", "image/jpeg")] {
            let data = std::fs::read(format!(
                "{}/../shared/corpus/images/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            for cut in [0, 8, 100, data.len() / 3] {
                // A truncated JPEG may still decode (missing scans render gray); either is fine,
                // as long as nothing panics.
                let r = run_on(&data[..cut], f, mime, 1);
                if cut < 200 {
                    assert!(r.is_err(), "{f} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn alpha_is_flattened_onto_white() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([0, 0, 0, 0]),
        ));
        let flat = flatten(img);
        assert_eq!(flat.as_rgb8().unwrap().get_pixel(0, 0).0, [255, 255, 255]);
        let gray = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Luma([65535u16]),
        ));
        assert!(matches!(flatten(gray), DynamicImage::ImageLuma8(_)));
    }

    #[test]
    fn exif_orientation_is_applied() {
        use image::ImageEncoder;
        // Minimal little-endian TIFF block with Orientation = 6 (rotate 90 degrees clockwise).
        let mut exif = b"II*\0".to_vec();
        exif.extend_from_slice(&8u32.to_le_bytes());
        exif.extend_from_slice(&1u16.to_le_bytes());
        exif.extend_from_slice(&0x0112u16.to_le_bytes());
        exif.extend_from_slice(&3u16.to_le_bytes());
        exif.extend_from_slice(&1u32.to_le_bytes());
        exif.extend_from_slice(&6u16.to_le_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let img = image::RgbImage::from_pixel(40, 20, image::Rgb([200, 10, 10]));
        let mut jpeg = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90);
        enc.set_exif_metadata(exif).unwrap();
        enc.write_image(img.as_raw(), 40, 20, image::ExtendedColorType::Rgb8)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (p, out) = (dir.path().join("r.jpg"), dir.path().join("o"));
        std::fs::write(&p, &jpeg).unwrap();
        let input = Input {
            path: &p,
            name: "r.jpg",
            kind: Kind::Image,
            format: "image/jpeg",
            stage: 0,
        };
        let prod = run(1, &input, &out, &Limits::default()).unwrap();
        assert_eq!(prod.note, "jpeg q45/35 20x40");
        assert_eq!(
            ImageReader::open(&out)
                .unwrap()
                .with_guessed_format()
                .unwrap()
                .into_dimensions()
                .unwrap(),
            (20, 40)
        );
    }

    #[test]
    fn stage2_bounds_the_longest_side() {
        let img = image::GrayImage::from_fn(3000, 500, |x, _| image::Luma([(x % 256) as u8]));
        let dir = tempfile::tempdir().unwrap();
        let (p, out) = (dir.path().join("wide.png"), dir.path().join("o"));
        img.save(&p).unwrap();
        let input = Input {
            path: &p,
            name: "wide.png",
            kind: Kind::Image,
            format: "image/png",
            stage: 0,
        };
        run(2, &input, &out, &Limits::default()).unwrap();
        let (w, h) = ImageReader::open(&out)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        assert_eq!(w, 1024);
        assert!((170..=171).contains(&h), "{h}");
        let small = Limits {
            max_image_pixels: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            run(1, &input, &out, &small),
            Err(TransformError::Limit(_))
        ));
    }
}
