"""The consortium's curated synonym table (English, Chinese, abbreviations) and the list of
Traditional Chinese Medicine diagnoses that have no ICD-10 equivalent.

A term here is auto-accepted; anything else goes to review. Hospitals add their own terms in
their profile (``[terminology.synonyms]``); the consortium table is consulted after the
hospital's own. Keys are compared after :func:`medledger.gateway.text.normalise_term`.
"""

from __future__ import annotations

# Abbreviations that stand for more than one diagnosis are left out, so they go to review
# instead of being accepted: CHD (coronary or congenital heart disease), CHB (chronic
# hepatitis B or complete heart block), TB (tuberculosis of any site). A hospital whose usage
# is unambiguous lists them in its profile.
AMBIGUOUS: tuple[str, ...] = ("CHD", "CHB", "TB")

# WHO code: synonyms (English, abbreviations, Chinese)
CONSORTIUM: dict[str, tuple[str, ...]] = {
    "I10": ("HTN", "hypertension", "essential hypertension", "primary hypertension",
            "high blood pressure", "高血压", "高血压病", "原发性高血压"),
    "E11.9": ("T2DM", "DM2", "DM type 2", "type 2 diabetes", "type 2 diabetes mellitus",
              "diabetes mellitus type 2", "diabetes mellitus type II", "type II diabetes",
              "NIDDM", "2型糖尿病", "二型糖尿病", "II型糖尿病", "Ⅱ型糖尿病"),
    "E10.9": ("T1DM", "DM1", "type 1 diabetes", "type 1 diabetes mellitus",
              "diabetes mellitus type 1", "IDDM", "1型糖尿病", "一型糖尿病"),
    "I25.1": ("CAD", "coronary artery disease", "coronary heart disease",
              "冠心病", "冠状动脉粥样硬化性心脏病"),
    "J44.9": ("COPD", "chronic obstructive pulmonary disease", "慢阻肺", "慢性阻塞性肺疾病",
              "慢性阻塞性肺病"),
    "N18.9": ("CKD", "chronic kidney disease", "慢性肾脏病", "慢性肾病"),
    "I21.9": ("AMI", "acute myocardial infarction", "急性心梗", "急性心肌梗死"),
    "I63.9": ("cerebral infarction", "ischemic stroke", "ischaemic stroke", "脑梗", "脑梗死",
              "脑梗塞"),
    "I48.9": ("AF", "AFib", "atrial fibrillation", "房颤", "心房颤动"),
    "I50.9": ("CHF", "HF", "heart failure", "心衰", "心力衰竭"),
    "J18.9": ("pneumonia", "CAP", "community acquired pneumonia", "肺炎", "社区获得性肺炎"),
    "J06.9": ("URTI", "URI", "upper respiratory tract infection", "上感", "上呼吸道感染",
              "急性上呼吸道感染"),
    "N39.0": ("UTI", "urinary tract infection", "尿路感染", "泌尿系感染"),
    "E78.5": ("hyperlipidemia", "hyperlipidaemia", "dyslipidemia", "高血脂", "高脂血症",
              "血脂异常"),
    "U07.1": ("COVID-19", "COVID", "新冠肺炎", "新型冠状病毒肺炎", "新冠"),
    "K21.9": ("GERD", "GORD", "reflux disease", "胃食管反流病", "反流病"),
    "C34.9": ("lung cancer", "肺癌"),
    "C16.9": ("gastric cancer", "stomach cancer", "胃癌"),
    "C50.9": ("breast cancer", "乳腺癌"),
    "B18.1": ("chronic hepatitis B", "慢性乙肝", "乙肝", "慢性乙型肝炎"),
    "E03.9": ("hypothyroidism", "甲减", "甲状腺功能减退"),
    "D64.9": ("anemia", "anaemia", "贫血"),
    "J45.9": ("asthma", "哮喘", "支气管哮喘"),
    "K35.8": ("acute appendicitis", "急性阑尾炎"),
    "K29.7": ("gastritis", "胃炎"),
    "A16.2": ("pulmonary tuberculosis", "肺结核"),
    "G40.9": ("epilepsy", "癫痫"),
    "G20": ("Parkinson's disease", "Parkinson disease", "帕金森病"),
    "M81.9": ("osteoporosis", "骨质疏松", "骨质疏松症"),
    "F32.9": ("depression", "抑郁", "抑郁症"),
    "E66.9": ("obesity", "肥胖", "肥胖症"),
}

# TCM disease and pattern (证候) names: no ICD-10 equivalent; never mapped, never suggested.
TCM_TERMS: tuple[str, ...] = (
    "消渴病", "消渴", "胸痹", "胸痹心痛", "胸痹心痛病", "眩晕病", "中风病", "不寐", "不寐病",
    "痹证", "痹病", "肺胀", "喘证", "郁病", "水肿病", "虚劳", "胃脘痛",
    "肝郁脾虚证", "气虚血瘀证", "痰湿证", "阴虚阳亢证", "肝阳上亢证", "痰瘀互结证", "气阴两虚证",
    "脾胃虚弱证", "风寒束表证", "风热犯肺证",
)
# A Chinese term ending in one of these is a TCM pattern diagnosis (e.g. 肝肾阴虚证).
TCM_SUFFIXES: tuple[str, ...] = ("证", "證")
