//! Transform benchmark: what each kind keeps, how faithfully, and how fast.
//!
//! `cargo bench --bench transforms` (or `scripts/bench-transforms`). Prints, per kind, the bytes
//! kept at each stage, a fidelity figure and throughput, with ImageMagick (`convert -quality 45`,
//! the seed's stage-1 setting) and `gzip -6` measured in the same run as baselines. Timings are
//! medians of `RUNS` runs. `BENCH_QUICK=1` shrinks the synthetic binary to 32 MiB.
//!
//! Method (also in docs/BENCHMARKS.md):
//! - Images: every corpus image is decoded once as the engine decodes it (first frame, EXIF
//!   orientation, alpha flattened onto white). Each candidate encodes those same pixels; the
//!   baselines get them as a lossless PNG. Fidelity is the mean SSIM of luma over 8x8 windows
//!   (image-compare's MSSIMSimple) between the original and the decoded candidate; a reduced
//!   candidate is scaled back up to the original size (bilinear) before comparing.
//! - Binary: every codec compresses the same inputs in memory; MB/s counts input bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage};
use rustdb::transform::image::{self as img, JpegSetting, QTables};
use rustdb::transform::{binary, detect, Input, Kind, Limits};

const RUNS: usize = 3;
const MB: f64 = 1024.0 * 1024.0;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// One corpus file, detected as the engine detects it.
struct Sample {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    detected: rustdb::transform::Detected,
}

impl Sample {
    fn all(dir: &str) -> Vec<Sample> {
        corpus(dir)
            .into_iter()
            .map(|path| {
                let name = name_of(&path);
                let bytes = std::fs::read(&path).unwrap();
                let detected = detect::detect(&name, &bytes[..bytes.len().min(8192)]);
                Sample {
                    path,
                    name,
                    bytes,
                    detected,
                }
            })
            .collect()
    }

    /// The original as a stage-0 transform input.
    fn input(&self) -> Input<'_> {
        Input {
            path: &self.path,
            name: &self.name,
            kind: self.detected.kind,
            format: &self.detected.format,
            stage: 0,
        }
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Median wall time of `RUNS` calls.
fn time<T>(f: impl FnMut() -> T) -> (T, Duration) {
    time_runs(RUNS, f)
}

/// Median wall time of `runs` calls (one is enough to rank a setting that takes minutes).
fn time_runs<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    (last.unwrap(), Duration::from_secs_f64(median(times)))
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MB / d.as_secs_f64().max(1e-9)
}

/// Whether the real ImageMagick `convert` is on the PATH (not a stand-in).
fn have_imagemagick() -> bool {
    Command::new("convert")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"Version: ImageMagick"))
}

// ---------------------------------------------------------------------------------------------
// Images

struct Picture {
    name: String,
    file_bytes: u64,
    pixels: DynamicImage,
    luma: GrayImage,
    /// The decoded pixels as a lossless PNG, for the command-line baseline.
    png: PathBuf,
}

fn ssim(original: &GrayImage, jpeg: &[u8]) -> f64 {
    let decoded = image::load_from_memory(jpeg)
        .expect("candidate decodes")
        .to_luma8();
    let decoded = if decoded.dimensions() != original.dimensions() {
        image::imageops::resize(
            &decoded,
            original.width(),
            original.height(),
            FilterType::Triangle,
        )
    } else {
        decoded
    };
    image_compare::gray_similarity_structure(
        &image_compare::Algorithm::MSSIMSimple,
        original,
        &decoded,
    )
    .expect("same size")
    .score
}

/// Mean of the SSIM of each of R, G and B: what luma alone does not see of chroma loss.
fn ssim_rgb(original: &DynamicImage, jpeg: &[u8]) -> f64 {
    let o = original.to_rgb8();
    let d = image::load_from_memory(jpeg).unwrap().to_rgb8();
    let d = if d.dimensions() != o.dimensions() {
        image::imageops::resize(&d, o.width(), o.height(), FilterType::Triangle)
    } else {
        d
    };
    let channel = |img: &image::RgbImage, c: usize| {
        GrayImage::from_fn(img.width(), img.height(), |x, y| {
            image::Luma([img.get_pixel(x, y)[c]])
        })
    };
    (0..3)
        .map(|c| {
            image_compare::gray_similarity_structure(
                &image_compare::Algorithm::MSSIMSimple,
                &channel(&o, c),
                &channel(&d, c),
            )
            .unwrap()
            .score
        })
        .sum::<f64>()
        / 3.0
}

fn scaled(p: &DynamicImage, max_side: Option<u32>) -> DynamicImage {
    match max_side {
        Some(s) if p.width().max(p.height()) > s => p.resize(s, s, FilterType::Triangle),
        _ => p.clone(),
    }
}

/// A JPEG encoder under test.
#[derive(Clone, Copy)]
enum Encoder {
    Mozjpeg,
    ImageRs,
    JpegEncoderOpt,
    ImageMagick,
}

impl Encoder {
    fn label(self) -> &'static str {
        match self {
            Encoder::Mozjpeg => "mozjpeg (ours)",
            Encoder::ImageRs => "image-rs",
            Encoder::JpegEncoderOpt => "jpeg-encoder opt",
            Encoder::ImageMagick => "ImageMagick",
        }
    }

    fn encode(self, p: &Picture, s: JpegSetting, tmp: &Path) -> Vec<u8> {
        match self {
            Encoder::Mozjpeg => img::render(&p.pixels, s).expect("mozjpeg").0,
            Encoder::ImageRs => {
                let px = scaled(&p.pixels, s.max_side);
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, s.quality)
                    .encode_image(&px)
                    .expect("image-rs jpeg");
                out
            }
            Encoder::JpegEncoderOpt => {
                let px = scaled(&p.pixels, s.max_side);
                let (data, color) = match &px {
                    DynamicImage::ImageLuma8(g) => {
                        (g.as_raw().clone(), jpeg_encoder::ColorType::Luma)
                    }
                    other => (other.to_rgb8().into_raw(), jpeg_encoder::ColorType::Rgb),
                };
                let mut out = Vec::new();
                let mut e = jpeg_encoder::Encoder::new(&mut out, s.quality);
                e.set_optimized_huffman_tables(true);
                e.set_progressive(true);
                e.encode(&data, px.width() as u16, px.height() as u16, color)
                    .expect("jpeg-encoder");
                out
            }
            Encoder::ImageMagick => {
                let out = tmp.join("im.jpg");
                let mut cmd = Command::new("convert");
                cmd.arg(&p.png);
                if let Some(side) = s.max_side {
                    cmd.args(["-resize", &format!("{side}x{side}>")]);
                }
                let status = cmd
                    .args(["-quality", &s.quality.to_string()])
                    .arg(&out)
                    .status()
                    .expect("convert runs");
                assert!(status.success(), "convert failed on {}", p.name);
                std::fs::read(&out).unwrap()
            }
        }
    }
}

struct Row {
    label: String,
    bytes: u64,
    mean_ssim: f64,
    min_ssim: f64,
    rgb_ssim: f64,
    mbps: f64,
}

fn sweep(pics: &[Picture], enc: Encoder, s: JpegSetting, tmp: &Path, timed: bool) -> Row {
    let mut bytes = 0;
    let mut ssims = Vec::new();
    let mut rgb = Vec::new();
    let mut secs = 0.0;
    let mut input = 0;
    for p in pics {
        let (jpeg, d) = time_runs(if timed { RUNS } else { 1 }, || enc.encode(p, s, tmp));
        secs += d.as_secs_f64();
        input += p.file_bytes;
        bytes += jpeg.len() as u64;
        ssims.push(ssim(&p.luma, &jpeg));
        rgb.push(ssim_rgb(&p.pixels, &jpeg));
    }
    let side = s.max_side.map(|m| format!(" {m}px")).unwrap_or_default();
    let label = match enc {
        Encoder::Mozjpeg => format!(
            "mozjpeg {:?}{} q{}{}{side}",
            s.tables,
            if s.trellis { " trellis" } else { "" },
            s.quality,
            if s.chroma_quality != s.quality {
                format!("/{}", s.chroma_quality)
            } else {
                String::new()
            }
        ),
        _ => format!("{} q{}{side}", enc.label(), s.quality),
    };
    Row {
        label,
        bytes,
        mean_ssim: ssims.iter().sum::<f64>() / ssims.len() as f64,
        min_ssim: ssims.iter().cloned().fold(f64::INFINITY, f64::min),
        rgb_ssim: rgb.iter().sum::<f64>() / rgb.len() as f64,
        mbps: input as f64 / MB / secs.max(1e-9),
    }
}

fn print_rows(seed: &Row, rows: &[Row]) {
    println!(
        "  {:<44} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}  fewer bytes, higher SSIM",
        "setting", "bytes", "vs seed", "mean SSIM", "min SSIM", "RGB SSIM", "enc MB/s"
    );
    for r in std::iter::once(seed).chain(rows) {
        let dominates = r.bytes < seed.bytes && r.mean_ssim > seed.mean_ssim;
        println!(
            "  {:<44} {:>9} {:>7.3} {:>9.4} {:>8.4} {:>8.4} {:>8.1}  {}",
            r.label,
            r.bytes,
            r.bytes as f64 / seed.bytes as f64,
            r.mean_ssim,
            r.min_ssim,
            r.rgb_ssim,
            r.mbps,
            if std::ptr::eq(r, seed) {
                "(baseline)"
            } else if dominates {
                "yes"
            } else {
                ""
            }
        );
    }
}

fn load_pictures(tmp: &Path) -> Vec<Picture> {
    let limits = Limits::default();
    let mut pics = Vec::new();
    for sample in Sample::all("images") {
        if sample.detected.kind != Kind::Image {
            continue;
        }
        let pixels = img::load(&sample.input(), &limits).expect("corpus image decodes");
        let png = tmp.join(format!("{}.png", sample.name));
        pixels.save(&png).unwrap();
        pics.push(Picture {
            name: sample.name,
            file_bytes: sample.bytes.len() as u64,
            luma: pixels.to_luma8(),
            pixels,
            png,
        });
    }
    pics
}

fn stage1_candidates() -> Vec<JpegSetting> {
    let mut out = Vec::new();
    let trellis = |q, tables| JpegSetting {
        trellis: true,
        tables,
        ..JpegSetting::new(q)
    };
    for q in [50, 60, 70] {
        out.push(trellis(q, QTables::Mozjpeg));
        out.push(trellis(q, QTables::MsSsim));
    }
    for q in [45, 55, 65] {
        out.push(trellis(q, QTables::AnnexK));
    }
    for q in [42, 44, 45, 46, 48, 50, 55, 60] {
        out.push(JpegSetting::new(q));
    }
    for (q, cq) in [(45, 35), (48, 35), (50, 35), (50, 40), (55, 40), (60, 45)] {
        out.push(JpegSetting {
            chroma_quality: cq,
            ..JpegSetting::new(q)
        });
    }
    out
}

fn stage2_candidates() -> Vec<JpegSetting> {
    let mut out = Vec::new();
    for side in [768, 1024] {
        for q in [20, 30] {
            out.push(JpegSetting {
                max_side: Some(side),
                trellis: true,
                ..JpegSetting::new(q)
            });
        }
        for (q, cq) in [(18, 18), (20, 20), (20, 15), (22, 15), (25, 15), (30, 20)] {
            out.push(JpegSetting {
                max_side: Some(side),
                chroma_quality: cq,
                ..JpegSetting::new(q)
            });
        }
    }
    out
}

fn bench_images(tmp: &Path) {
    println!("== images: {} ==", corpus("images").len());
    let pics = load_pictures(tmp);
    let im = have_imagemagick();
    if !im {
        println!("  (ImageMagick's convert not found: the seed rows use mozjpeg's settings only)");
    }
    let seed_enc = if im {
        Encoder::ImageMagick
    } else {
        Encoder::ImageRs
    };
    let seed1 = JpegSetting::new(45);
    let seed2 = JpegSetting {
        max_side: Some(768),
        ..JpegSetting::new(20)
    };

    println!("-- stage 1 (full size): candidates against the seed's q45 --");
    let seed = sweep(&pics, seed_enc, seed1, tmp, true);
    let mut rows = vec![
        sweep(&pics, Encoder::ImageRs, seed1, tmp, false),
        sweep(&pics, Encoder::JpegEncoderOpt, seed1, tmp, false),
    ];
    for s in stage1_candidates() {
        rows.push(sweep(&pics, Encoder::Mozjpeg, s, tmp, false));
    }
    print_rows(&seed, &rows);

    println!("-- stage 2 (reduced): candidates against the seed's q20 at 768 px --");
    let seed = sweep(&pics, seed_enc, seed2, tmp, true);
    let mut rows = Vec::new();
    for s in stage2_candidates() {
        rows.push(sweep(&pics, Encoder::Mozjpeg, s, tmp, false));
    }
    print_rows(&seed, &rows);

    println!(
        "-- chosen defaults per file: stage 1 {:?}, stage 2 {:?} --",
        img::STAGE1,
        img::STAGE2
    );
    println!(
        "  {:<28} {:>10} {:>9} {:>7} {:>9} {:>7} {:>10} {:>10}",
        "file", "original", "stage 1", "SSIM", "stage 2", "SSIM", "seed s1", "seed SSIM"
    );
    let (mut o, mut a, mut b, mut sd) = (0, 0, 0, 0);
    for p in &pics {
        let s1 = img::render(&p.pixels, img::STAGE1).unwrap().0;
        let s2 = img::render(&p.pixels, img::STAGE2).unwrap().0;
        let seed1b = seed_enc.encode(p, seed1, tmp);
        println!(
            "  {:<28} {:>10} {:>9} {:>7.4} {:>9} {:>7.4} {:>10} {:>10.4}",
            p.name,
            p.file_bytes,
            s1.len(),
            ssim(&p.luma, &s1),
            s2.len(),
            ssim(&p.luma, &s2),
            seed1b.len(),
            ssim(&p.luma, &seed1b)
        );
        o += p.file_bytes;
        a += s1.len() as u64;
        b += s2.len() as u64;
        sd += seed1b.len() as u64;
    }
    println!(
        "  {:<28} {:>10} {:>9} {:>7} {:>9} {:>7} {:>10}",
        "total", o, a, "", b, "", sd
    );

    // Whole transform (decode + encode) through the public entry point, as the engine runs it.
    let limits = Limits::default();
    let (mut bytes, mut secs) = (0u64, 0.0);
    for sample in Sample::all("images") {
        if sample.detected.kind != Kind::Image {
            continue;
        }
        let out = tmp.join("stage1.jpg");
        let (_, t) = time(|| rustdb::transform::apply(1, &sample.input(), &out, &limits).unwrap());
        bytes += sample.bytes.len() as u64;
        secs += t.as_secs_f64();
    }
    let ours = mbps(bytes, Duration::from_secs_f64(secs));
    println!("  stage-1 transform (decode + encode), all images: {ours:.1} MB/s of input");
    if im {
        let mut secs = 0.0;
        for path in corpus("images") {
            if path.extension().is_some_and(|e| e == "txt") {
                continue;
            }
            let out = tmp.join("im-direct.jpg");
            let (_, t) = time(|| {
                Command::new("convert")
                    .arg(format!("{}[0]", path.display()))
                    .args(["-quality", "45"])
                    .arg(&out)
                    .status()
                    .unwrap()
            });
            secs += t.as_secs_f64();
        }
        let theirs = mbps(bytes, Duration::from_secs_f64(secs));
        println!(
            "  convert FILE[0] -quality 45 (process per file), all images: {theirs:.1} MB/s; ours/convert = {:.2}",
            ours / theirs
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Binary

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A deterministic mixed file: 1 MiB blocks of corpus bytes of every kind (60%), random bytes
/// (20%), zeros (10%) and repeated log-like lines (10%).
fn mixed_file(path: &Path, size: usize) {
    let mut pool = Vec::new();
    for dir in ["binary", "text", "sheets", "docs", "images"] {
        for p in corpus(dir) {
            pool.extend(std::fs::read(p).unwrap());
        }
    }
    let mut seed = 0x5eed_u64;
    let mut out = Vec::with_capacity(size);
    let block = 1 << 20;
    let mut n = 0u64;
    while out.len() < size {
        let pick = xorshift(&mut seed) % 10;
        match pick {
            0..=5 => {
                let at = (xorshift(&mut seed) as usize) % (pool.len() - block);
                out.extend_from_slice(&pool[at..at + block]);
            }
            6 | 7 => out.extend((0..block).map(|_| xorshift(&mut seed) as u8)),
            8 => out.extend(std::iter::repeat_n(0u8, block)),
            _ => {
                let start = out.len();
                while out.len() - start < block {
                    n += 1;
                    out.extend(
                        format!(
                            "2026-11-21T10:{:02}:{:02}Z INFO request id={} took {}ms\n",
                            n / 60 % 60,
                            n % 60,
                            xorshift(&mut seed) % 100000,
                            n % 997
                        )
                        .bytes(),
                    );
                }
                out.truncate(start + block);
            }
        }
    }
    out.truncate(size);
    std::fs::write(path, out).unwrap();
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn bench_binary(tmp: &Path) {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let mixed_len = if quick { 32 << 20 } else { 200 << 20 };
    let mixed = tmp.join("mixed.bin");
    mixed_file(&mixed, mixed_len);
    let mut inputs = corpus("binary");
    inputs.push(mixed);
    println!("== binary: codecs on every input (ratio = compressed / original) ==");
    type Codec = (String, Box<dyn Fn(&[u8]) -> Vec<u8>>, fn(&[u8]) -> Vec<u8>);
    let zstd_dec: fn(&[u8]) -> Vec<u8> = |c| zstd::decode_all(c).unwrap();
    let mut codecs: Vec<Codec> = vec![
        ("gzip-6 (flate2)".into(), Box::new(|d| gzip(d, 6)), gunzip),
        ("gzip-9 (flate2)".into(), Box::new(|d| gzip(d, 9)), gunzip),
    ];
    for level in [1, 3, 6, 9, 19] {
        codecs.push((
            format!("zstd-{level}"),
            Box::new(move |d| zstd::encode_all(d, level).unwrap()),
            zstd_dec,
        ));
    }
    println!(
        "  {:<18} {:<16} {:>11} {:>7} {:>9} {:>9}",
        "input", "codec", "bytes", "ratio", "comp MB/s", "dec MB/s"
    );
    let mut totals: BTreeMap<String, (u64, u64, f64)> = BTreeMap::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        for (label, enc, dec) in &codecs {
            let slow = *label == "zstd-19" && data.len() > 8 << 20;
            let (c, tc) = time_runs(if slow { 1 } else { RUNS }, || enc(&data));
            let (d, td) = time(|| dec(&c));
            assert_eq!(d.len(), data.len(), "{label} round trip");
            println!(
                "  {:<18} {:<16} {:>11} {:>7.3} {:>9.1} {:>9.1}",
                name_of(path),
                label,
                c.len(),
                c.len() as f64 / data.len() as f64,
                mbps(data.len() as u64, tc),
                mbps(data.len() as u64, td)
            );
            let t = totals.entry(label.clone()).or_default();
            t.0 += data.len() as u64;
            t.1 += c.len() as u64;
            t.2 += tc.as_secs_f64();
        }
        // The command-line baseline, a process per file.
        let out = tmp.join("gz.out");
        let (_, tg) = time(|| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "gzip -6 -c '{}' > '{}'",
                    path.display(),
                    out.display()
                ))
                .status()
                .unwrap()
        });
        let gz = std::fs::metadata(&out).unwrap().len();
        println!(
            "  {:<18} {:<16} {:>11} {:>7.3} {:>9.1}",
            name_of(path),
            "gzip -6 (CLI)",
            gz,
            gz as f64 / data.len() as f64,
            mbps(data.len() as u64, tg)
        );
        let t = totals.entry("gzip -6 (CLI)".to_string()).or_default();
        t.0 += data.len() as u64;
        t.1 += gz;
        t.2 += tg.as_secs_f64();
    }
    println!("  -- all inputs together --");
    for (label, (orig, comp, secs)) in &totals {
        println!(
            "  {:<35} {:>11} {:>7.3} {:>9.1}",
            label,
            comp,
            *comp as f64 / *orig as f64,
            *orig as f64 / MB / secs
        );
    }

    // The container the engine writes: independent chunks, so a read decodes one chunk.
    println!(
        "-- chunked container (engine default: {} KiB chunks, level {}) --",
        binary::DEFAULT_CHUNK / 1024,
        binary::DEFAULT_LEVEL
    );
    println!(
        "  {:<18} {:>6} {:>6} {:>7} {:>10} {:>18}",
        "input", "chunk", "level", "ratio", "comp MB/s", "cold 4 KiB read"
    );
    let mut totals: BTreeMap<(usize, i32), (u64, u64, f64)> = BTreeMap::new();
    for path in &inputs {
        let len = std::fs::metadata(path).unwrap().len();
        for chunk in [64 << 10, binary::DEFAULT_CHUNK, 1 << 20] {
            for level in [1, 3, 9, 19] {
                let out = tmp.join("chunked.bin");
                let compress = || binary::compress_file(path, &out, chunk, level).unwrap();
                let slow = level == 19 && len > 8 << 20;
                let (clen, t) = time_runs(if slow { 1 } else { RUNS }, compress);
                let mut seed = 7u64;
                let mut buf = vec![0u8; 4096];
                let reads = 200;
                let start = Instant::now();
                for _ in 0..reads {
                    let at = xorshift(&mut seed) % len.max(1);
                    // A fresh reader each time, so no read is served from the chunk cache.
                    let r =
                        binary::ChunkedReader::open(std::fs::File::open(&out).unwrap()).unwrap();
                    r.read_at(at, &mut buf).unwrap();
                }
                let per_read = start.elapsed() / reads;
                println!(
                    "  {:<18} {:>5}K {:>6} {:>7.3} {:>10.1} {:>18?}",
                    name_of(path),
                    chunk / 1024,
                    level,
                    clen as f64 / len as f64,
                    mbps(len, t),
                    per_read
                );
                let e = totals.entry((chunk, level)).or_default();
                e.0 += len;
                e.1 += clen;
                e.2 += t.as_secs_f64();
            }
        }
    }
    println!("  -- all inputs together --");
    for ((chunk, level), (orig, comp, secs)) in &totals {
        println!(
            "  {:>5}K chunks, level {:>2}: ratio {:.3}, {:.1} MB/s",
            chunk / 1024,
            level,
            *comp as f64 / *orig as f64,
            *orig as f64 / MB / secs
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Summaries: text, spreadsheets, documents

/// Lower-case words of four letters or more.
fn vocabulary(s: &str) -> std::collections::BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4 && w.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
        .collect()
}

fn coverage(original: &str, summary: &str) -> String {
    let want = vocabulary(original);
    let have = vocabulary(summary);
    let kept = want.intersection(&have).count();
    format!("{kept}/{} words", want.len())
}

/// What a summary keeps of its original, in the terms the issue promises per kind.
fn keeps(name: &str, original: &[u8], summary: &[u8]) -> String {
    let o = String::from_utf8_lossy(original);
    let s = String::from_utf8_lossy(summary);
    let ext = name.rsplit('.').next().unwrap_or("");
    let frac = |kept: usize, total: usize, what: &str| format!("{kept}/{total} {what}");
    match ext {
        "log" => {
            let distinct: std::collections::BTreeSet<(&str, String)> = o
                .lines()
                .filter_map(rustdb::transform::text::log_message)
                .collect();
            let kept = distinct
                .iter()
                .filter(|(_, m)| s.contains(m.as_str()))
                .count();
            frac(kept, distinct.len(), "distinct error/warn messages")
        }
        "json" => {
            fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
                match v {
                    serde_json::Value::Object(m) => {
                        for (k, v) in m {
                            out.insert(k.clone());
                            keys(v, out);
                        }
                    }
                    serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
                    _ => {}
                }
            }
            let mut all = std::collections::BTreeSet::new();
            keys(&serde_json::from_slice(original).unwrap(), &mut all);
            let valid = serde_json::from_slice::<serde_json::Value>(summary).is_ok();
            let kept = all
                .iter()
                .filter(|k| s.contains(&format!("\"{k}\"")))
                .count();
            format!(
                "{}; {}",
                frac(kept, all.len(), "keys"),
                if valid { "valid JSON" } else { "INVALID JSON" }
            )
        }
        "md" => {
            let mut fenced = false;
            let headings: Vec<&str> = o
                .lines()
                .filter(|l| {
                    if l.starts_with("```") {
                        fenced = !fenced;
                    }
                    !fenced && l.starts_with('#')
                })
                .map(|l| l.trim_start_matches('#').trim())
                .collect();
            let kept = headings.iter().filter(|h| s.contains(*h)).count();
            frac(kept, headings.len(), "headings")
        }
        "csv" | "tsv" => {
            let delim = if ext == "tsv" { b'\t' } else { b',' };
            let header: Vec<String> = csv::ReaderBuilder::new()
                .delimiter(delim)
                .comment(Some(b'#'))
                .flexible(true)
                .from_reader(original)
                .headers()
                .map(|h| h.iter().map(str::to_string).collect())
                .unwrap_or_default();
            let kept = header.iter().filter(|h| s.contains(h.as_str())).count();
            let parses = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(summary)
                .records()
                .all(|r| r.is_ok());
            format!(
                "{}; {}",
                frac(kept, header.len(), "columns named"),
                if parses { "valid CSV" } else { "INVALID CSV" }
            )
        }
        "xlsx" | "xls" | "ods" => {
            use calamine::Reader;
            let mut wb = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(original))
                .expect("corpus workbook opens");
            let mut header = Vec::new();
            for sheet in wb.sheet_names().to_vec() {
                if let Ok(range) = wb.worksheet_range(&sheet) {
                    // The header is the first row that is not a `#` note.
                    let first = |r: &&[calamine::Data]| {
                        !r.first().is_some_and(|c| c.to_string().starts_with('#'))
                    };
                    if let Some(row) = range.rows().find(first) {
                        header.extend(row.iter().map(|c| c.to_string()).filter(|c| !c.is_empty()));
                    }
                }
            }
            let missing: Vec<&String> = header.iter().filter(|h| !s.contains(h.as_str())).collect();
            let kept = header.len() - missing.len();
            if missing.is_empty() {
                frac(kept, header.len(), "columns named")
            } else {
                format!(
                    "{} (missing {missing:?})",
                    frac(kept, header.len(), "columns named")
                )
            }
        }
        "txt" => {
            let first = o.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let last = o.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            let squashed = s.split_whitespace().collect::<Vec<_>>().join(" ");
            let has =
                |l: &str| squashed.contains(&l.split_whitespace().collect::<Vec<_>>().join(" "));
            format!(
                "opening {}, closing {}, {}",
                if has(first) { "kept" } else { "lost" },
                if has(last) { "kept" } else { "lost" },
                coverage(&o, &s)
            )
        }
        _ => {
            // Documents: the summary's own header lines say what it found.
            let has = |k: &str| s.lines().take(12).any(|l| l.to_lowercase().contains(k));
            format!(
                "title {}, author {}",
                if has("title") { "yes" } else { "no" },
                if has("author") { "yes" } else { "no" },
            )
        }
    }
}

fn bench_summaries(dir: &str) {
    println!("== {dir}: stage 1 from the original, stage 2 from stage 1 ==");
    println!(
        "  {:<18} {:>9} {:>9} {:>8} {:>7} {:>9}  keeps (stage 1 | stage 2)",
        "file", "original", "gzip -6", "stage 1", "stage 2", "s1 MB/s"
    );
    let limits = Limits::default();
    let tmp = tempfile::tempdir().unwrap();
    for sample in Sample::all(dir) {
        let (name, original) = (&sample.name, &sample.bytes);
        let s1 = tmp.path().join("s1");
        let (p1, t1) = time(|| rustdb::transform::apply(1, &sample.input(), &s1, &limits));
        let p1 = match p1 {
            Ok(p) => p,
            Err(e) => {
                println!("  {name:<18} stage 1 failed: {e}");
                continue;
            }
        };
        let s1_bytes = std::fs::read(&s1).unwrap();
        let s2 = tmp.path().join("s2");
        let stage1 = Input {
            path: &s1,
            format: &p1.format,
            stage: 1,
            ..sample.input()
        };
        rustdb::transform::apply(2, &stage1, &s2, &limits).unwrap();
        let s2_bytes = std::fs::read(&s2).unwrap();
        println!(
            "  {:<18} {:>9} {:>9} {:>8} {:>7} {:>9.1}  {} | {}",
            name,
            original.len(),
            gzip(original, 6).len(),
            s1_bytes.len(),
            s2_bytes.len(),
            mbps(original.len() as u64, t1),
            keeps(name, original, &s1_bytes),
            keeps(name, original, &s2_bytes),
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks sections.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));
    let tmp = tempfile::tempdir().unwrap();
    println!("RustDB transform benchmark: medians of {RUNS} runs, release build");
    if want("images") {
        bench_images(tmp.path());
    }
    for dir in ["text", "sheets", "docs"] {
        if want(dir) {
            bench_summaries(dir);
        }
    }
    if want("binary") {
        bench_binary(tmp.path());
    }
}
