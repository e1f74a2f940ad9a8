//! The OECD Fields of Science and Technology (FOS 2007) classification, as used by
//! `Project.spec.oecdFos2007Code`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A field of science by the OECD FOS 2007 classification, written as its code (e.g. `"1.2"`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OecdFos2007Code {
    /// Mathematics
    #[serde(rename = "1.1")]
    F1_1,
    /// Computer and information sciences
    #[serde(rename = "1.2")]
    F1_2,
    /// Physical sciences
    #[serde(rename = "1.3")]
    F1_3,
    /// Chemical sciences
    #[serde(rename = "1.4")]
    F1_4,
    /// Earth and related environmental sciences
    #[serde(rename = "1.5")]
    F1_5,
    /// Biological sciences
    #[serde(rename = "1.6")]
    F1_6,
    /// Other natural sciences
    #[serde(rename = "1.7")]
    F1_7,
    /// Civil engineering
    #[serde(rename = "2.1")]
    F2_1,
    /// Electrical engineering, electronic engineering, information engineering
    #[serde(rename = "2.2")]
    F2_2,
    /// Mechanical engineering
    #[serde(rename = "2.3")]
    F2_3,
    /// Chemical engineering
    #[serde(rename = "2.4")]
    F2_4,
    /// Materials engineering
    #[serde(rename = "2.5")]
    F2_5,
    /// Medical engineering
    #[serde(rename = "2.6")]
    F2_6,
    /// Environmental engineering
    #[serde(rename = "2.7")]
    F2_7,
    /// Environmental biotechnology
    #[serde(rename = "2.8")]
    F2_8,
    /// Industrial biotechnology
    #[serde(rename = "2.9")]
    F2_9,
    /// Nano-technology
    #[serde(rename = "2.10")]
    F2_10,
    /// Other engineering and technologies
    #[serde(rename = "2.11")]
    F2_11,
    /// Basic medicine
    #[serde(rename = "3.1")]
    F3_1,
    /// Clinical medicine
    #[serde(rename = "3.2")]
    F3_2,
    /// Health sciences
    #[serde(rename = "3.3")]
    F3_3,
    /// Health biotechnology
    #[serde(rename = "3.4")]
    F3_4,
    /// Other medical sciences
    #[serde(rename = "3.5")]
    F3_5,
    /// Agriculture, forestry, and fisheries
    #[serde(rename = "4.1")]
    F4_1,
    /// Animal and dairy science
    #[serde(rename = "4.2")]
    F4_2,
    /// Veterinary science
    #[serde(rename = "4.3")]
    F4_3,
    /// Agricultural biotechnology
    #[serde(rename = "4.4")]
    F4_4,
    /// Other agricultural sciences
    #[serde(rename = "4.5")]
    F4_5,
    /// Psychology
    #[serde(rename = "5.1")]
    F5_1,
    /// Economics and business
    #[serde(rename = "5.2")]
    F5_2,
    /// Educational sciences
    #[serde(rename = "5.3")]
    F5_3,
    /// Sociology
    #[serde(rename = "5.4")]
    F5_4,
    /// Law
    #[serde(rename = "5.5")]
    F5_5,
    /// Political science
    #[serde(rename = "5.6")]
    F5_6,
    /// Social and economic geography
    #[serde(rename = "5.7")]
    F5_7,
    /// Media and communications
    #[serde(rename = "5.8")]
    F5_8,
    /// Other social sciences
    #[serde(rename = "5.9")]
    F5_9,
    /// History and archaeology
    #[serde(rename = "6.1")]
    F6_1,
    /// Languages and literature
    #[serde(rename = "6.2")]
    F6_2,
    /// Philosophy, ethics and religion
    #[serde(rename = "6.3")]
    F6_3,
    /// Arts (arts, history of arts, performing arts, music)
    #[serde(rename = "6.4")]
    F6_4,
    /// Other humanities
    #[serde(rename = "6.5")]
    F6_5,
}

impl OecdFos2007Code {
    /// The field's English label.
    pub fn label(self) -> &'static str {
        match self {
            OecdFos2007Code::F1_1 => "Mathematics",
            OecdFos2007Code::F1_2 => "Computer and information sciences",
            OecdFos2007Code::F1_3 => "Physical sciences",
            OecdFos2007Code::F1_4 => "Chemical sciences",
            OecdFos2007Code::F1_5 => "Earth and related environmental sciences",
            OecdFos2007Code::F1_6 => "Biological sciences",
            OecdFos2007Code::F1_7 => "Other natural sciences",
            OecdFos2007Code::F2_1 => "Civil engineering",
            OecdFos2007Code::F2_2 => {
                "Electrical engineering, electronic engineering, information engineering"
            }
            OecdFos2007Code::F2_3 => "Mechanical engineering",
            OecdFos2007Code::F2_4 => "Chemical engineering",
            OecdFos2007Code::F2_5 => "Materials engineering",
            OecdFos2007Code::F2_6 => "Medical engineering",
            OecdFos2007Code::F2_7 => "Environmental engineering",
            OecdFos2007Code::F2_8 => "Environmental biotechnology",
            OecdFos2007Code::F2_9 => "Industrial biotechnology",
            OecdFos2007Code::F2_10 => "Nano-technology",
            OecdFos2007Code::F2_11 => "Other engineering and technologies",
            OecdFos2007Code::F3_1 => "Basic medicine",
            OecdFos2007Code::F3_2 => "Clinical medicine",
            OecdFos2007Code::F3_3 => "Health sciences",
            OecdFos2007Code::F3_4 => "Health biotechnology",
            OecdFos2007Code::F3_5 => "Other medical sciences",
            OecdFos2007Code::F4_1 => "Agriculture, forestry, and fisheries",
            OecdFos2007Code::F4_2 => "Animal and dairy science",
            OecdFos2007Code::F4_3 => "Veterinary science",
            OecdFos2007Code::F4_4 => "Agricultural biotechnology",
            OecdFos2007Code::F4_5 => "Other agricultural sciences",
            OecdFos2007Code::F5_1 => "Psychology",
            OecdFos2007Code::F5_2 => "Economics and business",
            OecdFos2007Code::F5_3 => "Educational sciences",
            OecdFos2007Code::F5_4 => "Sociology",
            OecdFos2007Code::F5_5 => "Law",
            OecdFos2007Code::F5_6 => "Political science",
            OecdFos2007Code::F5_7 => "Social and economic geography",
            OecdFos2007Code::F5_8 => "Media and communications",
            OecdFos2007Code::F5_9 => "Other social sciences",
            OecdFos2007Code::F6_1 => "History and archaeology",
            OecdFos2007Code::F6_2 => "Languages and literature",
            OecdFos2007Code::F6_3 => "Philosophy, ethics and religion",
            OecdFos2007Code::F6_4 => "Arts (arts, history of arts, performing arts, music)",
            OecdFos2007Code::F6_5 => "Other humanities",
        }
    }
}
